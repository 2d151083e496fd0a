"""The suite's own rules, checked on a small inner pytest run (pytester): a skipped test turns a
green run red, so a missing browser or file can never pass off as a tested feature."""
import pytest

CONFTEST = """
from tests.helpers import refuse_skips


def pytest_sessionfinish(session, exitstatus):
    refuse_skips(session)
"""
PASSES = "def test_ok():\n    pass\n"
FAILS = "def test_bad():\n    assert False\n"
SKIPS = "import pytest\n\n\ndef test_needs_a_tool():\n    pytest.skip('no tool')\n"


@pytest.fixture
def run_inner(pytester):
    """``run_inner(*test_bodies)``: one test file holding the bodies, run under the suite's hook."""
    pytester.makeconftest(CONFTEST)

    def run(*bodies: str):
        pytester.makepyfile(test_inner="\n\n".join(bodies))
        return pytester.runpytest("-p", "no:cacheprovider")

    return run


def test_a_skip_turns_a_green_run_red(run_inner):
    result = run_inner(SKIPS, PASSES)
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*1 skipped (test_inner.py::test_needs_a_tool): the suite never skips*"])


def test_no_skip_stays_green_and_a_failure_stays_a_failure(run_inner):
    assert run_inner(PASSES).ret == 0
    result = run_inner(SKIPS, FAILS)
    result.assert_outcomes(failed=1, skipped=1)
    assert result.ret == 1
