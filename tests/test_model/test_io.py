"""model.io: write to a temporary file in the same folder, then rename; never a partial file."""
import json
import os
import signal
import subprocess
import sys

import pytest

import model.io
from model.io import atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text, remove_stale_temporaries
from tests.helpers import REPO


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
    assert folder == tmp_path and not existed and name.startswith(f".f.pth.{os.getpid()}.") and name.endswith(".tmp")


# A writer that has written half its file and then hangs, as a long video encode does.
HANGING_WRITER = """
import sys, time
from model.io import atomic_write
def half_then_hang(tmp):
    tmp.write_text("half")
    print("writing", flush=True)
    time.sleep(600)
atomic_write(sys.argv[1], half_then_hang)
"""


def _killed_writer(path) -> list:
    """Start HANGING_WRITER on ``path``, SIGKILL it mid-write; the temporaries it left."""
    writer = subprocess.Popen([sys.executable, "-c", HANGING_WRITER, str(path)], cwd=REPO, stdout=subprocess.PIPE,
                              text=True)
    assert writer.stdout.readline() == "writing\n"
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    return sorted(path.parent.glob(f".{path.name}.{writer.pid}.*.tmp"))


def test_the_first_write_into_a_folder_removes_what_killed_writers_left(tmp_path, monkeypatch):
    path = tmp_path / "out.mp4"
    left = _killed_writer(path)
    assert len(left) == 1 and left[0].read_text() == "half" and not path.exists()
    running = tmp_path / f".out.mp4.{os.getpid()}.abc12345.tmp"   # a live writer's: kept
    running.write_text("mine")
    other_left = _killed_writer(tmp_path / "other.bin")             # another file's, writer dead: removed too
    listings = []
    listing = model.io.remove_stale_temporaries
    monkeypatch.setattr(model.io, "remove_stale_temporaries", lambda folder: listings.append(folder) or listing(folder))

    atomic_write_text(path, "whole")

    assert path.read_text() == "whole" and not left[0].exists() and not other_left[0].exists()
    assert running.exists() and listings == [str(tmp_path)]
    atomic_write_text(tmp_path / "second.txt", "x")                   # the folder is listed once per process
    assert listings == [str(tmp_path)]


def test_a_folder_sweep_removes_only_dead_writers_temporaries(tmp_path):
    dead = _killed_writer(tmp_path / "a.json")
    pid = dead[0].name.split(".")[3]                                # ".a.json.<pid>.<random>.tmp"
    dead.append(tmp_path / f".b.json.{pid}.q7r8s9tu.tmp")           # a second file of the same dead writer
    dead[1].write_text("half")
    alive = tmp_path / f".c.json.{os.getpid()}.x1y2z3ab.tmp"
    foreign = tmp_path / ".notes.tmp"                              # not a name atomic_write makes: kept
    for p in (alive, foreign):
        p.write_text("x")

    assert sorted(remove_stale_temporaries(tmp_path)) == dead
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, foreign.name])
