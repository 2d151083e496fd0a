"""app.compare without a server: the Split chosen, a file of another split refused, a file of "all"
read for a part of it, and whether A and B were scored alike said plainly."""
from __future__ import annotations

import gradio as gr
import numpy as np
import pytest

from app import compare
from app.context import AppContext
from app.wflw_data import WFLWTestSet
from tests.helpers import shifted
from training.evaluate import write_predictions

META = {"checkpoint": "a.pth", "sha256": "a" * 64, "flip_test": True, "flip_convention": "1.x",
        "box_mode": "landmarks", "input_size": 256}
NME_A = np.linspace(0.01, 0.40, 40)   # face i of A: NME_A[i]
NME_B = NME_A[::-1].copy()            # B: the same errors, worst first


@pytest.fixture
def files(split_context, tmp_path):
    ts = split_context.testset
    test = ts.samples[:8]
    write_predictions(tmp_path / "a.json", ts.samples, shifted(ts.samples, NME_A), {**META, "split": "all"})
    write_predictions(tmp_path / "b.json", test, shifted(test, NME_B[:8]),
                      {**META, "checkpoint": "b.pth", "flip_convention": "0.x", "split": "test"})
    write_predictions(tmp_path / "b_all.json", ts.samples, shifted(ts.samples, NME_B),
                      {**META, "checkpoint": "b.pth", "split": "all"})
    return {name: str(tmp_path / f"{name}.json") for name in ("a", "b", "b_all")}


def test_each_split_compares_its_own_faces(split_context, files):
    summary, table, state = compare.compare(split_context, files["a"], files["b_all"], "train")
    assert sorted(table["face"]) == list(range(8, 40)) and state["order"] == list(table["face"])
    delta = NME_B - NME_A
    assert list(table["face"][:3]) == [8, 9, 10]  # the largest regressions of B on the train faces
    np.testing.assert_allclose(table["delta (pp)"], np.round(100 * delta[table["face"]], 2), atol=0.011)
    assert "**Split: train**, 32 faces of 40" in summary
    assert "A and B were scored alike: flip test on (1.x), landmarks boxes, input size 256." in summary
    assert "splits differ" not in summary and "not an independent ground truth" in summary
    _, _, state = compare.compare(split_context, files["a"], files["b_all"], "all")
    assert sorted(state["order"]) == list(range(40))


def test_a_test_file_against_an_all_file_says_what_differs(split_context, files):
    summary, table, state = compare.compare(split_context, files["a"], files["b"], "test")
    assert sorted(table["face"]) == list(range(8))
    np.testing.assert_allclose(table["NME B (%)"], np.round(100 * NME_B[table["face"]], 2), atol=0.011)
    assert "⚠ **Not scored the same way**: A and B differ in flip convention (A 1.x, B 0.x)." in summary
    assert ("\n\n⚠ **The splits differ**: A was made for the all split, B for the test split; both are compared on "
            "the test split's 8 faces.") in summary
    # a clicked row shows that face with each side's own prediction
    click = gr.SelectData(None, {"index": [1, 0], "value": "1"})
    view_a, view_b, info = compare.compare_open(split_context, state, click)
    assert view_a.shape == view_b.shape and not np.array_equal(view_a, view_b)
    assert info.startswith(f"**Face {state['order'][1]}**")


def test_a_file_of_another_split_is_refused(split_context, files):
    with pytest.raises(gr.Error, match=r"B: b.json holds predictions for the test split \(8 faces\), not the train "
                                       r"split \(32 faces\); make them with python -m training.evaluate --split train"):
        compare.compare(split_context, files["a"], files["b"], "train")


def test_empty_a_is_the_loaded_predictions(split_context, files):
    ts = split_context.testset
    ts.set_predictions(shifted(ts.samples, NME_A), "loaded.json", {**META, "split": "all"})
    summary, table, _ = compare.compare(split_context, None, files["b"], "test")
    assert "**A** loaded.json" in summary and sorted(table["face"]) == list(range(8))
    np.testing.assert_allclose(table["NME A (%)"], np.round(100 * NME_A[table["face"]], 2), atol=0.011)


def test_wflw_offers_its_test_split_only(small_wflw_root, tmp_path):
    ts = WFLWTestSet.load(small_wflw_root)
    path = write_predictions(tmp_path / "p.json", ts.samples, ts.gt, META)
    ctx = AppContext(predictor=None, detector=None, testset=ts, output_dir=tmp_path)
    try:
        with pytest.raises(gr.Error, match="Split: split 'train' is not available: the browser holds only the test "
                                           "split of WFLW"):
            compare.compare(ctx, str(path), str(path), "train")
        summary, _, _ = compare.compare(ctx, str(path), str(path), "test")
        assert "B is worse on 0 faces and better on 0" in summary
    finally:
        ctx.close()


@pytest.mark.parametrize("a, b, said", [
    ({"flip_test": False, "flip_convention": "1.x"}, {"flip_test": False, "flip_convention": "0.x"},
     "scored alike: flip test off,"),  # no flip test: the convention plays no part
    ({"flip_test": True}, {"flip_test": False},
     "Not scored the same way**: A and B differ in flip test (A on, B off)."),
    ({"box_mode": "landmarks", "input_size": 256}, {"box_mode": "rect", "input_size": 128},
     "box mode (A landmarks, B rect); input size (A 256, B 128)."),
    ({}, {"flip_test": True}, "flip test (A unknown, B on)"),
])
def test_scoring_note(a, b, said):
    assert said in compare.scoring_note({**META, **a} if a else {}, {**META, **b}, "test", 1)
