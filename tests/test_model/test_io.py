"""model.io: write to a temporary file in the same folder, then rename; never a partial file."""
import json

import pytest

from model.io import atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text


def test_writes_and_replaces(tmp_path):
    path = tmp_path / "sub" / "a.json"
    assert atomic_write_json(path, {"x": [1, 2]}, indent=1) == path  # the folder is created
    assert json.loads(path.read_text()) == {"x": [1, 2]}
    atomic_write_text(path, "second ü")
    assert path.read_text(encoding="utf-8") == "second ü"
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["a.json"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "keep.txt"
    path.write_text("old")

    def half_then_fail(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_a_writer_that_writes_nothing_is_an_error(tmp_path):
    with pytest.raises(OSError, match="nothing.txt: nothing was written"):
        atomic_write(tmp_path / "nothing.txt", lambda tmp: None)
    assert list(tmp_path.iterdir()) == []


def test_the_temporary_is_in_the_same_folder_and_does_not_exist_yet(tmp_path):
    seen = []

    def writer(tmp):
        seen.append((tmp.parent, tmp.exists(), tmp.name))
        tmp.write_bytes(b"x")

    atomic_write(tmp_path / "f.pth", writer)
    folder, existed, name = seen[0]
    assert folder == tmp_path and not existed and name.startswith(".f.pth.") and name.endswith(".tmp")
