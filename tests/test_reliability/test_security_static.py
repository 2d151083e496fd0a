"""Tree-wide checks that are cheap to state and easy to regress."""
import re

from tests.conftest import REPO

PY_FILES = [p for p in REPO.rglob("*.py") if ".venv" not in p.parts and "test-artifacts" not in p.parts]


def _calls(pattern: str):
    for path in PY_FILES:
        text = path.read_text()
        for match in re.finditer(pattern, text):
            # the whole call: up to the closing parenthesis that balances the opening one
            depth, end = 0, match.end() - 1
            for end in range(match.end() - 1, len(text)):
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
            yield path, text[match.start(): end + 1]


def test_every_torch_load_is_weights_only():
    calls = list(_calls(r"torch\.load\("))
    assert calls, "expected torch.load calls in the tree"
    bad = [f"{p.relative_to(REPO)}: {c}" for p, c in calls if "weights_only=True" not in c]
    assert not bad, "torch.load without weights_only=True:\n" + "\n".join(bad)


def test_no_unsafe_deserialisers():
    """Outside the tests (which build a malicious pickle on purpose), nothing unpickles or evals."""
    patterns = (r"pickle\.loads?\(", r"yaml\.load\(", r"(?<![.\w])eval\(", r"np\.load\(")
    bad = [f"{p.relative_to(REPO)}: {c}" for pat in patterns for p, c in _calls(pat)
           if p.relative_to(REPO).parts[0] != "tests" and "allow_pickle=True" not in c.replace("allow_pickle=False", "")
           and not c.startswith("np.load(")]
    bad += [f"{p.relative_to(REPO)}: {c}" for p, c in _calls(r"np\.load\(") if "allow_pickle=True" in c]
    assert not bad, "unsafe deserialisation outside tests:\n" + "\n".join(bad)


def test_telemetry_off_and_loopback_default():
    makefile = (REPO / "Makefile").read_text()
    assert "GRADIO_ANALYTICS_ENABLED := False" in makefile and "HF_HUB_DISABLE_TELEMETRY := 1" in makefile
    assert "HOST   ?= 127.0.0.1" in makefile
