"""Ground truth in the upload tab and `--predictions` at start-up, end to end through gradio_client
against one live `python -m app --wflw-root ... --predictions ...` server.

The predictions file is built here in ``training.evaluate``'s format with a hand-chosen NME per
face (every point moved by d x the inter-ocular distance gives NME = d exactly), so the browser's
numbers and order, and the rank of an uploaded face, are known in advance.
"""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from model.geometry import box_to_crop, landmark_box
from model.image import read_image
from model.layout import EYE_CORNERS, NUM_LANDMARKS
from training import metrics
from training.evaluate import write_predictions
from model.formats.wflw import Sample, WFLWTree, format_wflw_line, load_wflw_json, load_wflw_txt

# NME fraction given to each face of the small tree (6 synthetic + 4 real faces), in test-list order.
TARGET_NME = [0.021, 0.094, 0.052, 0.137, 0.008, 0.071, 0.115, 0.033, 0.066, 0.047]
FOOTBALL = "36_Football_americanfootball_ball_36_415.jpg"  # a real WFLW test image with one annotated face


@pytest.fixture(scope="module")
def wflw_server(tmp_path_factory, small_wflw_root, mean_shape_checkpoint, artifacts_dir, app_server):
    samples = load_wflw_txt(WFLWTree(small_wflw_root).annotations("test"))
    assert len(samples) == len(TARGET_NME)
    pred = []
    for s, d in zip(samples, TARGET_NME):
        iod = float(np.linalg.norm(s.landmarks[EYE_CORNERS[0]] - s.landmarks[EYE_CORNERS[1]]))
        pred.append(s.landmarks + [d * iod, 0.0])
    predictions = tmp_path_factory.mktemp("evaluate") / "predictions.json"
    write_predictions(predictions, samples, np.stack(pred), {
        "checkpoint": "hand-made", "sha256": "", "flip_test": False, "flip_convention": "1.x",
        "box_mode": "landmarks", "input_size": 256})
    args = ["--weights", mean_shape_checkpoint, "--wflw-root", small_wflw_root, "--predictions", predictions,
            "--review-db", tmp_path_factory.mktemp("db") / "review.sqlite", "--device", "cpu", "--no-flip"]
    server = app_server([str(a) for a in args], artifacts_dir / "app-api-wflw.log").start()
    yield server, Client(server.url, verbose=False)
    server.stop()


def _rank(value: float) -> int:
    return 1 + sum(d > value for d in TARGET_NME)


def _green_near(image_path: str, points: np.ndarray, radius: int = 4) -> int:
    """How many of ``points`` have a ground-truth-green pixel within ``radius`` (lossy JPEG tolerated)."""
    rgb = read_image(image_path).astype(int)
    green = (rgb[..., 1] > 150) & (rgb[..., 0] < 120) & (rgb[..., 2] < 120)
    h, w = green.shape
    hits = 0
    for x, y in np.round(points).astype(int):
        window = green[max(y - radius, 0):min(y + radius + 1, h), max(x - radius, 0):min(x + radius + 1, w)]
        hits += bool(window.any())
    return hits


def _captions(items) -> list[tuple[int, float, int]]:
    """(rank, NME %, face index) of each gallery item."""
    out = []
    for item in items:
        m = re.fullmatch(r"#(\d+) · NME ([\d.]+)% · face (\d+)", item["caption"])
        assert m, item["caption"]
        out.append((int(m.group(1)), float(m.group(2)), int(m.group(3))))
    return out


def test_predictions_file_feeds_the_browser(wflw_server):
    _, client = wflw_server
    status, note, table, _, _, _, _ = client.predict(api_name="/overview")
    assert "predictions: predictions.json" in status and note.startswith("#### Metrics of the test split (10 faces)")
    assert f"NME {100 * np.mean(TARGET_NME):.2f} %" in status
    assert table["visible"] and table["label"] == "Metrics of the test split and its subsets"  # an update
    rows = {row[0]: row for row in table["value"]["data"]}
    assert rows["NME (%)"][1] == pytest.approx(100 * np.mean(TARGET_NME), abs=0.01)
    assert rows["FR@0.1 (%)"][1] == pytest.approx(100 * np.mean(np.array(TARGET_NME) > 0.1), abs=0.01)
    assert rows["faces"][1] == len(TARGET_NME)

    items, count = client.predict("all", 0, "", api_name="/gallery")  # no upper bound  # the order State stays on the server
    worst_first = [int(i) for i in np.argsort(-np.array(TARGET_NME), kind="stable")]
    captions = _captions(items)
    assert "10 faces match" in count
    assert [c[0] for c in captions] == list(range(1, len(TARGET_NME) + 1))
    assert [c[2] for c in captions] == worst_first
    assert [c[1] for c in captions] == pytest.approx([100 * TARGET_NME[i] for i in worst_first], abs=0.006)

    # The NME filter narrows the same ranking: faces with 5-10 % only.
    items, count = client.predict("all", 5, "10", api_name="/gallery")
    assert [c[2] for c in _captions(items)] == [i for i in worst_first if 0.05 <= TARGET_NME[i] <= 0.10]


def test_uploaded_wflw_image_gets_nme_and_rank(wflw_server, shared_data):
    _, client = wflw_server
    photo = shared_data / "mmpose-tests" / "wflw" / FOOTBALL
    truth = next(s for s in load_wflw_json(photo.parent / "test_wflw.json") if s.image == FOOTBALL)
    _, text = client.predict(handle_file(str(photo)), api_name="/predict")
    record = json.loads(text)
    with_nme = [f for f in record["faces"] if f.get("nme") is not None]  # the others: "nme": null
    assert len(record["faces"]) == 3 and len(with_nme) == 1  # three faces found, one annotated in WFLW
    face = with_nme[0]
    # the annotated face is the one MTCNN boxed around it (centres closer than half the box side)
    center, _ = box_to_crop(landmark_box(truth.landmarks), padding=1.0)
    face_center, face_side = box_to_crop(np.asarray(face["box"]), padding=1.0)
    assert np.linalg.norm(face_center - center) < face_side / 2
    expected = float(metrics.nme(np.asarray(face["landmarks"])[None], truth.landmarks[None])[0])
    assert face["nme"] == pytest.approx(expected, abs=1e-4)

    # /describe draws the faces /predict kept for this client's session (no network, no JSON re-parsing)
    annotated, _, table, json_file, summary, text = client.predict(
        handle_file(str(photo)), False, "", None, "reading order", api_name="/describe")
    assert f"NME **{100 * expected:.2f} %**, rank {_rank(expected)} / {len(TARGET_NME)}" in summary
    rank_column = table["headers"].index("WFLW rank")
    ranks = [row[rank_column] for row in table["data"] if row[rank_column]]
    assert ranks == [f"{_rank(expected)} / {len(TARGET_NME)}"]
    assert _green_near(annotated, truth.landmarks) > 0.8 * NUM_LANDMARKS
    assert json_file.endswith(FOOTBALL.replace(".jpg", ".json"))


def test_pasted_annotation_line_gives_nme_and_is_drawn(wflw_server, shared_data, tmp_path):
    """Under a name the test set does not know, only the pasted line can supply the truth."""
    _, client = wflw_server
    source = shared_data / "mmpose-tests" / "wflw" / FOOTBALL
    photo = tmp_path / "pasted_truth.jpg"
    shutil.copy(source, photo)
    truth = next(s for s in load_wflw_json(source.parent / "test_wflw.json") if s.image == FOOTBALL)
    line = format_wflw_line(Sample(FOOTBALL, truth.landmarks, landmark_box(truth.landmarks), (False,) * 6))
    assert len(line.split()) == 207

    _, text = client.predict(handle_file(str(photo)), api_name="/predict")
    assert not any("nme" in f for f in json.loads(text)["faces"])
    plain, _, _, _, plain_summary, _ = client.predict(handle_file(str(photo)), False, "", None, "reading order",
                                                      api_name="/describe")
    annotated, _, _, json_file, summary, described = client.predict(handle_file(str(photo)), False, line, None,
                                                                    "reading order", api_name="/describe")
    faces = json.loads(described)["faces"]
    with_nme = [f for f in faces if f.get("nme") is not None]
    assert len(with_nme) == 1
    expected = float(metrics.nme(np.asarray(with_nme[0]["landmarks"])[None], truth.landmarks[None])[0])
    assert with_nme[0]["nme"] == pytest.approx(expected, abs=1e-4)
    assert f"NME **{100 * expected:.2f} %**, rank {_rank(expected)} / {len(TARGET_NME)}" in summary
    assert "NME" not in plain_summary
    assert _green_near(annotated, truth.landmarks) > 0.8 * NUM_LANDMARKS
    assert _green_near(plain, truth.landmarks) < 0.2 * NUM_LANDMARKS
    assert json_file.endswith("pasted_truth.json")

    with pytest.raises(AppError, match="Ground truth: pasted line 1: expected 207 or 197 fields, got 204"):
        client.predict(handle_file(str(photo)), False, line.rsplit(" ", 3)[0], None, "reading order",
                       api_name="/describe")


def test_labels_toggle_without_a_result_is_a_quiet_no_op(wflw_server, shared_data):
    """`/redraw` (the "Show landmark indices" box) before any upload, or before the image was run,
    changes nothing and raises nothing; with a result it redraws."""
    _, client = wflw_server
    skip = {"__type__": "update"}  # gr.skip(): every output left as it was
    fresh = Client(wflw_server[0].url, verbose=False)  # a session that has run nothing yet
    assert fresh.predict(None, True, "", None, "reading order", api_name="/redraw") == (skip,) * 6
    photo = shared_data / "mmpose-tests" / "wflw" / FOOTBALL
    assert fresh.predict(handle_file(str(photo)), True, "", None, "reading order", api_name="/redraw") == (skip,) * 6
    fresh.predict(handle_file(str(photo)), api_name="/predict")
    annotated, *_, summary, _ = fresh.predict(handle_file(str(photo)), True, "", None, "reading order",
                                              api_name="/redraw")
    assert annotated and "3 faces" in summary
