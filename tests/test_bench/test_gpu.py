"""python -m bench.gpu: refuses to run without CUDA (exit 2)."""
import os
import subprocess
import sys

from bench.gpu import NO_CUDA_MESSAGE
from tests.helpers import REPO


def test_without_cuda_it_says_so_and_exits_2():
    # CUDA_VISIBLE_DEVICES="" hides every GPU, so this holds on a CUDA host too
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-m", "bench.gpu", "--skip-training"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert NO_CUDA_MESSAGE in done.stderr and "nothing measured" in done.stderr
    assert done.stdout == ""
