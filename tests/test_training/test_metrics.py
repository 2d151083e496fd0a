import numpy as np
import pytest
from matplotlib.figure import Figure

from model.layout import ATTRIBUTES, EYE_CORNERS, NUM_LANDMARKS
from model.layout import REGION_COLORS, REGIONS
from training.metrics import (CED_MARGIN, ced_curve, ced_figure, format_table, fr_auc, landmark_figure, nme,
                              per_landmark_error, subset_table)


def _faces():
    """Three faces with inter-ocular distances 10, 20, 40 and hand-set errors."""
    gt = np.zeros((3, NUM_LANDMARKS, 2))
    for i, d in enumerate((10.0, 20.0, 40.0)):
        gt[i, EYE_CORNERS[1], 0] = d
    pred = gt.copy()
    pred[0, :, 0] += 1.0                 # every point 1 px off: NME 1/10
    pred[1, :49, 1] += 4.0               # half the points 4 px off: NME 2/20
    pred[2, 0] += (3.0, 4.0)             # one point 5 px off: NME 5/98/40
    return pred, gt


def test_nme_by_hand():
    pred, gt = _faces()
    np.testing.assert_allclose(nme(pred, gt), [0.1, 0.1, 5 / 98 / 40])


def test_per_landmark_error():
    pred, gt = _faces()
    err = per_landmark_error(pred, gt)
    assert err.shape == (NUM_LANDMARKS,)
    assert err[0] == pytest.approx((0.1 + 0.2 + 5 / 40) / 3)
    assert err[97] == pytest.approx(0.1 / 3)


def test_zero_normaliser_and_shapes():
    gt = np.zeros((1, NUM_LANDMARKS, 2))
    with pytest.raises(ValueError, match="coincide"):
        nme(gt, gt)
    with pytest.raises(ValueError, match="shape"):
        nme(np.zeros((1, 5, 2)), np.zeros((1, 5, 2)))


def test_fr_auc_by_hand():
    fr, auc = fr_auc([0.05, 0.2])
    assert fr == 0.5
    assert auc == pytest.approx(0.25, abs=1e-3)  # CED is 0 up to 0.05, then 0.5
    fr, auc = fr_auc([0.0, 0.0])
    assert (fr, auc) == (0.0, pytest.approx(1.0))
    xs, ys = ced_curve([0.05, 0.2])
    assert xs[1] - xs[0] == pytest.approx(1e-4) and ys[-1] == 0.5


def test_subset_table_and_format():
    errors = np.array([0.02, 0.04, 0.2, 0.06])
    flags = np.zeros((4, len(ATTRIBUTES)), bool)
    flags[2:, 0] = True  # pose: 0.2 and 0.06
    table = subset_table(errors, flags)
    assert table["full"]["nme"] == pytest.approx(0.08) and table["full"]["fr"] == 0.25
    assert table["pose"]["nme"] == pytest.approx(0.13) and table["pose"]["num_faces"] == 2
    assert table["blur"]["num_faces"] == 0
    text = format_table(table)
    assert "Testset" in text and "Make-up" in text and "8.00" in text and "13.00" in text
    with pytest.raises(ValueError, match="attributes must have shape"):
        subset_table(errors, flags[:3])


def test_ced_figure_axis_fits_the_data():
    fig = ced_figure({"a": np.array([0.01, 0.05, 0.2])})
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_xlim() == pytest.approx((0, 20 * CED_MARGIN))  # past the 20 % face, in percent
    curve, threshold = ax.lines[0], ax.lines[1]
    assert curve.get_ydata()[-1] == pytest.approx(100)  # every face counted by the right edge
    # the curve by hand: no face below 1 %, one of three from 1 %, two from 5 %, all three from 20 %
    xs, ys = np.asarray(curve.get_xdata()), np.asarray(curve.get_ydata())
    for x, share in [(0.5, 0.0), (3.0, 100 / 3), (10.0, 200 / 3), (19.5, 200 / 3), (20.5, 100.0)]:
        assert ys[np.argmin(np.abs(xs - x))] == pytest.approx(share)
    # the legend: mean NME (0.01 + 0.05 + 0.2) / 3 = 8.67 %; AUC at 0.1 = (0.04 x 1/3 + 0.05 x 2/3) / 0.1
    # = 0.4667, plus the trapezoid rule's half of a 1e-4 x 1/3 step at each of the two jumps (2 x 0.00017)
    label = curve.get_label()
    assert label.startswith("a (NME 8.67%, AUC ")
    assert float(label.split("AUC ")[1].rstrip(")")) == pytest.approx(0.4667 + 0.0003, abs=1e-4)
    assert list(threshold.get_xdata()) == [10, 10]  # the failure threshold, marked
    assert "failure threshold 10%" in [t.get_text() for t in ax.get_legend().get_texts()]
    # small errors: the axis still reaches the 10 % threshold
    assert ced_figure({"b": np.array([0.01, 0.02])}).axes[0].get_xlim() == pytest.approx((0, 10))
    with pytest.raises(ValueError, match="curves is empty"):
        ced_figure({})


def test_landmark_figure_by_region():
    errors = np.arange(NUM_LANDMARKS) / 1000.0
    ax = landmark_figure(errors).axes[0]
    bars = ax.patches
    assert len(bars) == NUM_LANDMARKS
    assert [b.get_height() for b in bars] == pytest.approx(100 * errors)  # percent
    lo, _ = REGIONS["outer_lip"]
    np.testing.assert_allclose(bars[lo].get_facecolor()[:3], np.array(REGION_COLORS["outer_lip"]) / 255)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "contour" in labels and "right eye, left eye" in labels and "pupils" in labels
    with pytest.raises(ValueError, match="per_landmark must be 98 finite errors"):
        landmark_figure(np.zeros(5))
