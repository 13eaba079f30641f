"""Values from files and models reach the terminal as text: never parsed as rich markup, control characters escaped
(issue 12, "Output that a hostile name can hijack")."""

from __future__ import annotations

import io
import json
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecac_bench import SAMPLE_DATA
from ecac_bench.cli import main
from ecac_bench.commands._output import console, plain

ROWS = [orjson.loads(line) for line in SAMPLE_DATA.read_bytes().splitlines() if line.strip()][:8]
HOSTILE = [
    "[/]",
    "[link=https://evil.example]click[/link]",
    "[bold red]x",
    "\x1b[31mred\x1b[0m",
    "\x1b]8;;https://evil.example\x1b\\hi\x1b]8;;\x1b\\",
    "abc\u202edcba",
    "line\nbreak",
    "\x07bell",
]


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """The commands' console as a real terminal would see it (styles and hyperlinks on), written to a buffer."""
    buffer = io.StringIO()
    monkeypatch.setattr(console, "_file", buffer)  # not "file": undo would pin the capture of the moment
    monkeypatch.setattr(console, "_force_terminal", True)
    return buffer


def data_with(tmp_path: Path, areas: list[str]) -> Path:
    base = SAMPLE_DATA.parent
    rows = [{**r, "image": str((base / r["image"]).resolve()), "area": a} for r, a in zip(ROWS, areas, strict=False)]
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def predictions_for(tmp_path: Path) -> Path:
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"id": r["id"], "caption": r["caption"]}) + b"\n" for r in ROWS))
    return path


def assert_inert(output: str) -> None:
    assert "\x1b]8;" not in output  # no terminal hyperlink (OSC 8), neither from markup nor from the data
    assert "\x07" not in output and "\u202e" not in output
    # the only ESC sequences left are rich's own colour codes (CSI ... m)
    for part in output.split("\x1b")[1:]:
        assert part.startswith("["), repr(part[:10])
        code = part[1:].split("m", 1)[0]
        assert all(c.isdigit() or c == ";" for c in code), repr(part[:12])


def test_hostile_areas_and_model_names_print_as_text(tmp_path: Path, terminal: io.StringIO) -> None:
    data = data_with(tmp_path, HOSTILE)
    assert main(["stats", "--data", str(data)]) == 0
    argv = ["score", "--data", str(data), "--predictions", str(predictions_for(tmp_path)), "--by", "area"]
    assert main([*argv, "--model", "[link=https://evil.example]me[/link]\x1b[2J", "--n-boot", "20"]) == 0
    output = terminal.getvalue()
    assert_inert(output)
    assert "[/]" in output and "[link=https://evil.example]click[/link]" in output  # shown, not interpreted
    assert "\\x1b[31mred" in output and "abc\\u202edcba" in output and "line\\nbreak" in output
    assert "[link=https://evil" in output.replace("│", "").replace("\n", "")  # the model column (wrapped)


def test_errors_quote_file_content_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "p.jsonl"
    bad.write_text(json.dumps({"id": "\x1b[2Jnot-an-id", "caption": "x"}) + "\n")
    assert main(["score", "--predictions", str(bad), "--allow-missing"]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "not-an-id" in err


def test_plain_escapes_control_and_invisible_characters_only() -> None:
    assert plain("积木 [b] ok") == "积木 [b] ok"
    assert plain("a\tb\x00c\u200bd\u2066e") == "a\\tb\\x00c\\u200bd\\u2066e"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(areas=st.lists(st.text(min_size=1, max_size=12).filter(lambda s: s.strip()), min_size=8, max_size=8))
def test_any_area_name_prints_without_crashing_or_escaping_its_cell(tmp_path: Path, areas: list[str]) -> None:
    buffer = io.StringIO()
    # console._file, not console.file: the property resolves to the sys.stdout of the moment (pytest's capture),
    # and restoring that would pin every later test's output to this test's capture.
    previous_file, previous_force = console._file, console._force_terminal
    console.file, console._force_terminal = buffer, True
    try:
        data = data_with(tmp_path, areas)
        assert main(["stats", "--data", str(data)]) == 0
        preds = predictions_for(tmp_path)
        assert main(["score", "--data", str(data), "--predictions", str(preds), "--by", "area", "--n-boot", "0"]) == 0
    finally:
        console._file, console._force_terminal = previous_file, previous_force
    assert_inert(buffer.getvalue())
