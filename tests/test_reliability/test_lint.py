"""The linter: `ruff check` (rules in pyproject.toml) finds nothing in the project's own files."""
import subprocess
import sys

from tests.helpers import REPO


def test_ruff_finds_nothing():
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", "."], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
