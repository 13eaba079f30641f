"""A function run in a forked child (ecac_bench.forking): its result, its failures, and the cases where no child
is started."""

import gc
import os
import sys

import numpy as np
import pytest

from ecac_bench import forking

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the child process is Linux-only")


@pytest.fixture
def forced(monkeypatch):
    monkeypatch.setattr(forking, "can_fork", lambda: True)  # the test runner may have threads of its own
    monkeypatch.setattr(forking, "MIN_RECORDS", 0)


def test_the_child_s_result_comes_back(forced):
    parent = os.getpid()
    child = forking.fork_call(lambda: (os.getpid(), np.arange(5)), 1)
    assert child is not None
    pid, values = child.result()
    assert pid != parent and values.tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(RuntimeError, match="read once"):
        child.result()


def test_a_failing_child_gives_none(forced):
    child = forking.fork_call(lambda: 1 / 0, 1)
    assert child is not None and child.result() is None
    assert forking.fork_call(lambda: os._exit(3), 1).result() is None  # type: ignore[union-attr]


def test_auto_uses_a_second_process_only_where_a_core_is_idle(monkeypatch):
    monkeypatch.delenv(forking.ENV_PROCESSES, raising=False)
    for cores, load, expected in ((2, 0.7, 2), (2, 1.0, 2), (2, 1.3, 1), (1, 0.0, 1), (16, 14.9, 2), (16, 15.2, 1)):
        monkeypatch.setattr(forking, "usable_cores", lambda cores=cores: cores)
        monkeypatch.setattr(forking.os, "getloadavg", lambda load=load: (load, load, load))
        for value in ("", "auto", " Auto "):
            monkeypatch.setenv(forking.ENV_PROCESSES, value)
            assert forking.processes() == expected, (cores, load, value)
    monkeypatch.setattr(forking.os, "getloadavg", lambda: (_ for _ in ()).throw(OSError("not here")))
    assert forking.processes() == 1
    monkeypatch.setattr(forking, "usable_cores", lambda: 16)
    monkeypatch.setattr(forking.os, "getloadavg", lambda: (30.0, 30.0, 30.0))
    monkeypatch.setenv(forking.ENV_PROCESSES, "2")
    assert forking.processes() == 2  # asked for: whatever the load
    monkeypatch.setattr(forking.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setenv(forking.ENV_PROCESSES, "1")
    assert forking.processes() == 1
    for value in ("3", "two", "0"):
        monkeypatch.setenv(forking.ENV_PROCESSES, value)
        with pytest.raises(ValueError, match=f"ECAC_PROCESSES='{value}': expected 1, 2 or auto"):
            forking.processes()


def test_a_child_only_when_asked_for_and_the_work_is_large(monkeypatch):
    monkeypatch.setattr(forking, "MIN_RECORDS", 10)
    monkeypatch.setattr(forking.os, "getloadavg", lambda: (0.0, 0.0, 0.0))  # auto would fork: a core is idle
    monkeypatch.setenv(forking.ENV_PROCESSES, "1")
    assert not forking.can_fork() and forking.fork_call(lambda: 1, 10) is None
    monkeypatch.setenv(forking.ENV_PROCESSES, "2")
    monkeypatch.setattr(forking.threading, "active_count", lambda: 1)
    assert forking.can_fork() and forking.fork_call(lambda: 1, 9) is None
    child = forking.fork_call(lambda: 1, 10)
    assert child is not None and child.result() == 1


def test_a_child_whose_result_is_never_read_is_stopped_and_reaped(forced):
    child = forking.fork_call(lambda: __import__("time").sleep(60), 1)
    assert child is not None
    pid = child._pid
    del child
    gc.collect()
    with pytest.raises(ChildProcessError):  # already reaped: no zombie left behind
        os.waitpid(pid, os.WNOHANG)
