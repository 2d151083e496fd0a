"""bench.checkpoint: the benchmark checkpoint's training shows one progress bar over all its steps."""
from __future__ import annotations

import sys

import pytest

from bench.checkpoint import train_with_progress


def _command(root, work, *extra: str) -> list[str]:
    return [sys.executable, "-m", "training.train", "--wflw-root", str(root), "--work-dir", str(work), "--epochs", "2",
            "--input-size", "32", "--workers", "0", "--batch-size", "16", "--lr", "1e-3", "--warmup-iters", "1",
            "--pretrained", "none", "--print-freq", "1", "--eval-interval", "2", "--device", "cpu", *extra]


def test_training_has_one_bar_over_every_step(synthetic_root, tmp_path, capsys):
    train_with_progress(_command(synthetic_root, tmp_path), epochs=2)
    err = capsys.readouterr().err
    # 32 faces in batches of 16: 2 steps per epoch, 4 in all, known before the first step (ETA)
    assert "training:   0%" in err and "0/4" in err and "4/4" in err
    assert "evaluating: 100%" in err  # the evaluation after the last step is named, not a frozen bar
    assert (tmp_path / "best.pth").is_file() and "epoch 1 step 2/2" in (tmp_path / "log.txt").read_text()


def test_a_failed_training_quotes_its_error(tmp_path):
    with pytest.raises(RuntimeError, match=r"(?s)command failed with status 2: .*nowhere: no such folder"):
        train_with_progress(_command(tmp_path / "nowhere", tmp_path / "work"), epochs=2)
