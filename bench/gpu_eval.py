"""GPU evaluation throughput: crops cut on the GPU, bf16, channels-last, batch 256.

    python -m bench.gpu_eval [--weights W] [--batch-size 256] [--iters 20] [--no-flip]

Decoded images go to the GPU once as uint8; every batch of faces is cut from them with
``affine_grid`` + ``grid_sample`` (the same crop as ``cv2.warpAffine`` in ``model.geometry``,
bilinear with a black border), normalised and run through the regressor under bf16 autocast in
channels-last. Prints faces/s for the crop step, the network and both together.

The crop is ``model.geometry.gpu_crops`` (tests compare it with ``cv2.warpAffine`` on CPU).
Without a CUDA GPU the command says so and exits with status 2.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from model.constants import CROP_PADDING
from model.geometry import box_to_crop, crop_matrix, gpu_crops
from model.network import normalize

# Throughput target on one H100: faces/s at batch 256, bf16, channels-last (crop + network).
TARGET_FACES_PER_S = 10_000
DEFAULT_BATCH = 256
WARMUP_ITERS = 3


def pad_images(images: list[np.ndarray]) -> np.ndarray:
    """Stack (H, W, 3) uint8 images of any sizes into (I, 3, Hmax, Wmax), zero-padded bottom-right."""
    height = max(im.shape[0] for im in images)
    width = max(im.shape[1] for im in images)
    out = np.zeros((len(images), 3, height, width), np.uint8)
    for i, im in enumerate(images):
        out[i, :, :im.shape[0], :im.shape[1]] = im.transpose(2, 0, 1)
    return out


def _timed(fn, iters: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` (after warm-up), synchronising the GPU."""
    for _ in range(WARMUP_ITERS):
        fn()
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / iters


def _faces(batch: int):
    """(images, boxes per face, image index per face) from the benchmark's synthetic test faces."""
    from bench.checkpoint import synthetic_root
    from model.image import read_image
    from model.formats.wflw import crop_box, find_wflw_root, load_wflw_txt, resolve_image

    tree = find_wflw_root(synthetic_root())
    samples = load_wflw_txt(tree.annotations("test"))
    images = [read_image(resolve_image(tree.images, s.image)) for s in samples]
    boxes = np.stack([crop_box(s, "landmarks") for s in samples])  # the evaluation crops (mmpose's boxes)
    index = np.arange(batch) % len(samples)
    return images, boxes[index], index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default=None, help="checkpoint (default: the synthetic-trained bench checkpoint)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="faces per forward (default: 256)")
    parser.add_argument("--iters", type=int, default=20, help="timed batches (default: 20)")
    parser.add_argument("--no-flip", action="store_true", help="skip the mirrored crops")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench.gpu_eval: no CUDA GPU here; nothing measured", file=sys.stderr)
        return 2
    from bench.checkpoint import bench_checkpoint
    from model.network import load_regressor

    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    model = load_regressor(args.weights or bench_checkpoint()).to(device).to(memory_format=torch.channels_last)
    images, boxes, index = _faces(args.batch_size)
    padded = torch.from_numpy(pad_images(images)).to(device)
    matrices = torch.from_numpy(np.stack([crop_matrix(*box_to_crop(b, CROP_PADDING)) for b in boxes])).to(device)

    def crop():
        return gpu_crops(padded, matrices, image_index=index)

    crops = crop()

    @torch.inference_mode()
    def network(c=crops):
        x = normalize(c)
        if not args.no_flip:
            x = torch.cat([x, x.flip(-1)])
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return model(x.contiguous(memory_format=torch.channels_last))

    t_crop = _timed(crop, args.iters, device)
    t_net = _timed(network, args.iters, device)
    t_all = _timed(lambda: network(crop()), args.iters, device)
    b = args.batch_size
    print(f"device {torch.cuda.get_device_name(device)}, batch {b}, bf16, channels-last, flip {'off' if args.no_flip else 'on'}")
    print(f"  GPU crops        {b / t_crop:12,.0f} faces/s")
    print(f"  network          {b / t_net:12,.0f} faces/s")
    print(f"  crops + network  {b / t_all:12,.0f} faces/s  (target {TARGET_FACES_PER_S:,})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
