"""The app reads as rooms: each tab has its own builder, review does not reach into the browser
module, and the landmark-index check has one home (function lengths and import floors of every
package: tests/test_reliability/test_layers.py)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from app.review_store import check_landmark_index

APP = Path(__file__).resolve().parents[2] / "app"

def test_one_builder_per_tab_and_no_browser_hub():
    tabs = sorted(p.stem for p in (APP / "tabs").glob("*.py") if p.stem != "__init__")
    assert tabs == ["browser", "review", "upload", "video", "webcam"]
    for name in tabs:
        tree = ast.parse((APP / "tabs" / f"{name}.py").read_text(encoding="utf-8"))
        assert "build" in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, name
    review = ast.parse((APP / "review.py").read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(review) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(review) if isinstance(n, ast.Import) for a in n.names}
    assert "app.browser" not in imported and "app" not in imported, imported


def test_landmark_index_check_has_one_home():
    assert check_landmark_index(0) == 0 and check_landmark_index(97.0) == 97 and check_landmark_index("5") == 5
    for bad in (98, -1, 2.5, True, None, "x"):
        with pytest.raises(ValueError, match="landmark index must be in 0..97, got"):
            check_landmark_index(bad)
    with pytest.raises(ValueError, match="Landmark must be in 0..97, got 120"):
        check_landmark_index(120, "Landmark")
    retyped = [str(p.relative_to(APP.parent)) for p in APP.rglob("*.py")
               if p.name != "review_store.py" and "must be in 0..{NUM_LANDMARKS" in p.read_text(encoding="utf-8")]
    assert not retyped, retyped
