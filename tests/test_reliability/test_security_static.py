"""Tree-wide checks that are cheap to state and easy to regress."""
import re

from tests.helpers import REPO

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


def _make_assignments(text: str) -> dict[str, tuple[str, bool]]:
    """Top-level Makefile variable assignments: name -> (value, exported), whatever the spacing
    and whichever of ``=``, ``:=``, ``?=`` is used."""
    found = {}
    for m in re.finditer(r"^(export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*[:?]?=[ \t]*(.*?)[ \t]*$", text, re.M):
        found[m.group(2)] = (m.group(3), bool(m.group(1)))
    return found


def test_make_assignments_parser_by_hand():
    text = "HOST   ?= 127.0.0.1\nexport  A:=False\nB = 1 \n\tHOST = 0.0.0.0\n# C = 2\n"
    assert _make_assignments(text) == {"HOST": ("127.0.0.1", False), "A": ("False", True), "B": ("1", False)}


def test_telemetry_off_and_loopback_default():
    assigned = _make_assignments((REPO / "Makefile").read_text())
    assert assigned.get("GRADIO_ANALYTICS_ENABLED") == ("False", True)
    assert assigned.get("HF_HUB_DISABLE_TELEMETRY") == ("1", True)
    assert assigned.get("HOST", ("",))[0] == "127.0.0.1"
