"""Atomic writes of reports and folders: a failure leaves what was there, and names the path the user gave."""

import os
from pathlib import Path

import pytest

from ecac_bench import report
from ecac_bench.report import replace_dir, write_bytes_atomic


def _folder(path: Path, text: str) -> Path:
    path.mkdir()
    (path / "index.html").write_text(text)
    return path


def test_replace_dir_swaps_the_whole_folder(tmp_path: Path) -> None:
    target, staging = _folder(tmp_path / "site", "old"), _folder(tmp_path / ".site.new", "new")
    replace_dir(staging, target)
    assert (target / "index.html").read_text() == "new" and not staging.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]  # the old folder moved aside is gone


def test_a_failed_swap_puts_the_old_folder_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target, staging = _folder(tmp_path / "site", "old"), _folder(tmp_path / ".site.new", "new")
    real, calls = os.replace, []

    def second_rename_fails(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(report.os, "replace", second_rename_fails)
    with pytest.raises(OSError, match="No space left"):
        replace_dir(staging, target)
    assert (target / "index.html").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".site.new", "site"]


def test_write_errors_name_the_target_not_the_temp_file(tmp_path: Path) -> None:
    folder = tmp_path / "report.json"
    folder.mkdir()  # a folder where the report should go
    with pytest.raises(IsADirectoryError) as caught:
        write_bytes_atomic(folder, b"{}")
    assert caught.value.filename == str(folder)
    assert list(tmp_path.iterdir()) == [folder] and not any(folder.iterdir())  # no temp file left behind


def test_written_files_get_the_ordinary_mode(tmp_path: Path) -> None:
    """A report or a site page is readable as any file the user writes (mkstemp alone would make it 0600)."""
    target = tmp_path / "r.json"
    write_bytes_atomic(target, b"{}")
    reference = tmp_path / "plain"
    reference.write_bytes(b"")
    assert target.stat().st_mode & 0o777 == reference.stat().st_mode & 0o777
