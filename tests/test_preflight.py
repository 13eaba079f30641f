"""ecac_bench.preflight: the server must list the model we started and caption one real image before a run."""

from __future__ import annotations

import socket

import pytest
from judge_server import JudgeServer

from ecac_bench.data import load_dataset
from ecac_bench.preflight import PreflightError, main, preflight
from ecac_bench.prompts import load_prompt

IMAGE = load_dataset().records[0].image


def test_a_server_that_lists_the_model_and_captions_passes(capsys) -> None:
    with JudgeServer() as server:
        server.state.keep_bodies = True
        assert preflight(server.base_url, "test-judge", IMAGE)
        assert main(["--base-url", server.base_url, "--model", "test-judge"]) == 0
        (body, _) = server.state.bodies
        parts = body["messages"][0]["content"]
        assert parts[0]["type"] == "image_url" and parts[0]["image_url"]["url"].startswith("data:image/png;base64,")
        assert parts[1]["text"] == load_prompt("caption", "zh").render(), "the default captioning prompt is sent"
    assert "preflight ok" in capsys.readouterr().out


def test_another_model_on_the_port_is_refused() -> None:
    with JudgeServer() as server, pytest.raises(PreflightError, match=r"serves \['test-judge'\], not 'Qwen/x'"):
        preflight(server.base_url, "Qwen/x", IMAGE)


def test_an_empty_caption_fails() -> None:
    with JudgeServer() as server:
        server.state.responder = lambda messages: "  "
        with pytest.raises(PreflightError, match="empty caption"):
            preflight(server.base_url, "test-judge", IMAGE)


def test_no_server_is_one_line_and_exit_2(capsys) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main(["--base-url", f"http://127.0.0.1:{port}/v1", "--model", "m"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("preflight failed: ") and err.count("\n") == 1
