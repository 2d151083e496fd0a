"""The locked install: requirements.txt pins every package to one version, agrees with the
hand-edited requirements.in it is generated from, and is exactly what this environment runs."""
import re
from importlib import metadata

import pytest

from tests.helpers import REPO

LOCK = REPO / "requirements.txt"
TOP_LEVEL = REPO / "requirements.in"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)$")
REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:==([A-Za-z0-9.+!-]+))?$")


def _canonical(name: str) -> str:
    """PEP 503 name: case and runs of ``-_.`` do not matter (``gradio_client`` is ``gradio-client``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _lines(path) -> list[tuple[int, str]]:
    """(line number, text) of the requirement lines: comments and blank lines dropped."""
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if text:
            out.append((number, text))
    return out


def _parse(path, pattern: re.Pattern) -> dict[str, str | None]:
    found, bad = {}, []
    for number, text in _lines(path):
        m = pattern.match(text)
        if m is None:
            bad.append(f"{path.name}:{number}: {text!r}")
        else:
            found[_canonical(m.group(1))] = m.group(2)
    assert not bad, f"expected {pattern.pattern} on every requirement line of {path.name}:\n" + "\n".join(bad)
    return found


@pytest.fixture(scope="module")
def lock() -> dict[str, str]:
    return _parse(LOCK, PIN)


def test_parsers_by_hand(tmp_path):
    sample = tmp_path / "requirements.txt"
    sample.write_text("# header\nGradio_Client==2.7.2\n    # via gradio\n\ntorch==2.14.1  # the disk's wheel\n")
    assert _parse(sample, PIN) == {"gradio-client": "2.7.2", "torch": "2.14.1"}
    sample.write_text("numpy>=2\n")
    with pytest.raises(AssertionError, match=r"requirements.txt:1: 'numpy>=2'"):
        _parse(sample, PIN)


def test_every_package_is_pinned_secondary_ones_included(lock):
    for name in ("numpy", "opencv-python-headless", "matplotlib", "pillow", "onnx", "onnxruntime", "tensorboard",
                 "psutil", "pytest", "pytest-timeout", "tqdm", "gradio-client", "httpx", "pandas", "av",
                 "playwright", "pip-tools", "setuptools"):
        assert name in lock, f"{name} is not pinned in requirements.txt"
    # The wheels on the build machines' disk, and the MTCNN release whose requirements are unpinned.
    assert (lock["torch"], lock["torchvision"], lock["facenet-pytorch"]) == ("2.14.1", "0.29.1", "2.5.3")


def test_lock_agrees_with_requirements_in(lock):
    wanted = _parse(TOP_LEVEL, REQUIREMENT)
    missing = sorted(set(wanted) - set(lock))
    assert not missing, f"in requirements.in but not in the lock (run `make lock`): {missing}"
    differ = {name: (version, lock[name]) for name, version in wanted.items() if version and lock[name] != version}
    assert not differ, f"requirements.in pins (wanted, locked) not followed by the lock (run `make lock`): {differ}"


def test_this_environment_runs_the_lock(lock):
    """`make install` installs requirements.txt: every locked package is here at its locked version."""
    wrong = []
    for name, version in sorted(lock.items()):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "not installed"
        if installed != version:
            wrong.append(f"{name}: locked {version}, installed {installed}")
    assert not wrong, "the environment differs from requirements.txt (run `make install`):\n" + "\n".join(wrong)
