"""Bad annotation files: each gets a message naming the file and the line (or annotation), and the
readers can skip bad lines instead of stopping; paths that leave the dataset root are refused."""
import json

import numpy as np
import pytest

from model.formats.wflw import load_wflw_json, load_wflw_txt, resolve_image


def _raw_line(path="0--Parade/a.jpg") -> list[str]:
    coords = [f"{v:.3f}" for v in np.linspace(10, 200, 196)]
    return coords + ["5", "5", "210", "210"] + ["0", "1", "0", "0", "0", "0"] + [path]


@pytest.fixture
def annotation_file(tmp_path):
    good = " ".join(_raw_line())
    short = " ".join(_raw_line()[:-3] + ["x.jpg"])  # 205 fields
    with_nan = " ".join(["nan"] + _raw_line()[1:])
    path = tmp_path / "list_98pt_rect_attr_test.txt"
    path.write_text("\n".join([good, short, with_nan, good]) + "\n")
    return path


def test_bad_lines_stop_the_reader_with_file_and_line(annotation_file):
    with pytest.raises(ValueError, match=r"^list_98pt_rect_attr_test.txt line 2: expected 207 fields, got 205$"):
        load_wflw_txt(annotation_file)


def test_bad_lines_can_be_skipped_with_a_warning(annotation_file):
    with pytest.warns(UserWarning) as caught:
        samples = load_wflw_txt(annotation_file, on_error="skip")
    assert len(samples) == 2
    messages = " | ".join(str(w.message) for w in caught)
    assert "line 2: expected 207 fields, got 205" in messages and "line 3" in messages and "nan" in messages


def test_paths_that_escape_the_root_are_refused(tmp_path):
    images = tmp_path / "WFLW_images"
    images.mkdir()
    (tmp_path / "secret.jpg").write_bytes(b"x")
    for bad in ("../secret.jpg", "/etc/passwd", "0--Parade/../../secret.jpg"):
        with pytest.raises(ValueError, match="outside|escape|absolute"):
            resolve_image(images, bad)


def _mmpose_json(tmp_path, annotation: dict):
    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
            "annotations": [annotation], "categories": [{"id": 1, "name": "face"}]}
    path = tmp_path / "face_landmarks_wflw_test.json"
    path.write_text(json.dumps(data))
    return path


def test_mmpose_json_without_keypoints(tmp_path):
    path = _mmpose_json(tmp_path, {"id": 7, "image_id": 1, "bbox": [0, 0, 10, 10], "center": [5, 5], "scale": 0.1})
    with pytest.raises(ValueError, match="face_landmarks_wflw_test.json annotation 7: missing 'keypoints'"):
        load_wflw_json(path)


def test_mmpose_json_without_bbox_uses_the_landmark_extent(tmp_path):
    kp = np.zeros((98, 3))
    kp[:, 0], kp[:, 1], kp[:, 2] = np.linspace(10, 50, 98), np.linspace(20, 80, 98), 2
    path = _mmpose_json(tmp_path, {"id": 8, "image_id": 1, "keypoints": kp.ravel().tolist()})
    np.testing.assert_allclose(load_wflw_json(path)[0].box, [10, 20, 50, 80])


def test_mmpose_json_not_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"images": [')
    with pytest.raises(ValueError, match="broken.json: not valid JSON"):
        load_wflw_json(path)
