"""A function run in a forked child process while the parent goes on: how a large scoring run can use a second core.

The child starts with a copy-on-write view of the parent's memory, so it reads the loaded data without any copying,
and it sends back only its (small) result, pickled through a temporary file. Python objects cannot be shared between
processes any cheaper than they are built, so only work whose *result* is small is worth a child: the identity hash
of a dataset, whether each toy of half the images is named.

How many processes: ``ECAC_PROCESSES=1`` or ``2`` says; unset (or ``auto``), two when this process may run on two
cores or more and the machine has one idle (its 1-minute load average is at most the core count minus one). On a
machine whose cores are all busy a child only adds work (the pages both processes write are copied):
bench/score_throughput.py measures both. Any other value is an error (ValueError, naming the variable).

Nothing depends on the child: when a second process is not wanted, not possible or not safe (not Linux, or the
process has other threads), or the child fails for any reason, :meth:`Forked.result` returns None or no child is
started, and the caller does the work itself. Results are the same either way (tests pin them byte for byte). The
child never runs the parent's clean-up (it leaves through ``os._exit``), so it cannot flush the parent's buffered
output twice or remove the parent's files.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import tempfile
import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

# Below this many records a child costs more (fork, page copies, pickling) than the work it takes over.
MIN_RECORDS = 50_000
ENV_PROCESSES = "ECAC_PROCESSES"


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def processes() -> int:
    """How many processes a large run uses (1 or 2; see the module docstring)."""
    value = os.environ.get(ENV_PROCESSES, "").strip().lower()
    if value in ("", "auto"):
        cores = usable_cores()
        try:
            load = os.getloadavg()[0]
        except OSError:  # not known here: assume busy
            return 1
        return 2 if cores >= 2 and load <= cores - 1 else 1
    if value not in ("1", "2"):
        raise ValueError(f"{ENV_PROCESSES}={os.environ[ENV_PROCESSES]!r}: expected 1, 2 or auto")
    return int(value)


def can_fork() -> bool:
    """Whether a child may be forked here: two processes wanted (processes), Linux (fork is the platform's way),
    and no other Python thread (a lock held by one at fork time would stay held in the child)."""
    return sys.platform.startswith("linux") and threading.active_count() == 1 and processes() == 2


class Forked(Generic[T]):
    """``fn()`` running in a forked child; :meth:`result` waits for it. Make one with :func:`fork_call`."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by result(), else when this object goes
        self._pid = os.fork()
        if self._pid == 0:  # the child: never returns
            code = 1
            try:
                pickle.dump(fn(), self._file, protocol=pickle.HIGHEST_PROTOCOL)
                self._file.flush()
                code = 0
            except BaseException:
                pass
            finally:
                os._exit(code)
        self._done = False
        # A child whose result is never asked for is stopped and reaped when its Forked goes away: no zombie.
        self._finalizer = weakref.finalize(self, _stop, self._pid)

    def result(self) -> T | None:
        """The child's result (waiting for it), or None when it failed."""
        if self._done:
            raise RuntimeError("the result of a forked call is read once")
        self._done = True
        self._finalizer.detach()
        try:
            _, status = os.waitpid(self._pid, 0)
            if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
                return None
            self._file.seek(0)
            return pickle.load(self._file)
        except (OSError, EOFError, pickle.UnpicklingError):
            return None
        finally:
            self._file.close()


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass


def fork_call(fn: Callable[[], T], size: int) -> Forked[T] | None:
    """``fn()`` started in a child process when the work is large (``size`` records, at least MIN_RECORDS) and
    forking is possible; None otherwise (or if the fork fails): the caller then calls ``fn`` itself."""
    if size < MIN_RECORDS or not can_fork():
        return None
    try:
        return Forked(fn)
    except OSError:
        return None
