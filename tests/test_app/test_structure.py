"""The app reads as rooms: each tab has its own builder, review does not reach into the browser
module (the landmark-index check: tests/test_model/test_layout.py; function lengths and import floors of every
package: tests/test_reliability/test_layers.py)."""
from __future__ import annotations

import ast
from pathlib import Path



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
