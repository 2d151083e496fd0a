"""SIGKILL at random moments: acknowledged review decisions survive, and no checkpoint is ever
half-written under its final name."""
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from tests.helpers import REPO

WRITER = textwrap.dedent("""
    import sys
    from app.review_store import ReviewStore, VERDICTS
    store = ReviewStore(sys.argv[1])
    for i in range(1000):
        store.set_verdict(i, f"img_{i}.jpg", VERDICTS[i % len(VERDICTS)])
        store.set_note(i, f"img_{i}.jpg", f"note {i}")
        print(i, flush=True)  # acknowledged: both transactions have committed
""")


def _kill_after(proc, acks_wanted: int) -> list[int]:
    acks = []
    for line in proc.stdout:
        acks.append(int(line))
        if len(acks) >= acks_wanted:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return acks


@pytest.mark.parametrize("seed", [0, 1])
def test_review_store_survives_sigkill(tmp_path, seed):
    from app.review_store import VERDICTS, ReviewStore

    db = tmp_path / "review.sqlite"
    kill_at = int(np.random.default_rng(seed).integers(50, 900))
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    acks = _kill_after(proc, kill_at)
    assert proc.returncode == -signal.SIGKILL and len(acks) == kill_at
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store = ReviewStore(db)
    try:
        for i in acks:
            record = store.get(i, f"img_{i}.jpg")
            assert record["verdict"] == VERDICTS[i % len(VERDICTS)] and record["note"] == f"note {i}", i
        assert store.progress() >= len(acks)
    finally:
        store.close()


SAVER = textwrap.dedent("""
    import sys, torch
    from pathlib import Path
    from model.network import LandmarkRegressor
    from training.train import save_checkpoint
    model = LandmarkRegressor()
    for k in range(1000):
        with torch.no_grad():
            model.fc.bias.fill_(float(k))
        save_checkpoint({"model": model.state_dict(), "epoch": k}, Path(sys.argv[1]))
        print(k, flush=True)
""")


def test_checkpoint_never_half_written_under_its_final_name(tmp_path):
    from model.network import load_regressor

    path = tmp_path / "checkpoint.pth"
    rng = np.random.default_rng(7)
    for attempt in range(3):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
        first = proc.stdout.readline()  # one save done: the next one is under way
        assert first.strip().isdigit()
        time.sleep(float(rng.uniform(0.0, 0.4)))  # a save of the 90 MB state takes about that long
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # whatever moment the kill hit, the final name holds one complete checkpoint
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = load_regressor(path)
        assert model.fc.bias[0].item() == float(state["epoch"])
