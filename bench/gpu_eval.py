"""GPU evaluation throughput: crops cut on the GPU, bf16, channels-last, batch 256.

    python -m bench.gpu_eval [--weights W] [--batch-size 256] [--iters 20] [--no-flip]

Decoded images go to the GPU once as uint8; every batch of faces is cut from them with
``model.geometry.gpu_crops`` (the same crop as ``cv2.warpAffine``: bilinear, black border; the tests
compare the two) and run through ``model.backends.torch_forward`` under bf16 autocast in
channels-last. Prints faces/s for the crop step, the network and both together; ``bench.gpu``'s
table reports the same ceiling (``resident_rates``), eager and compiled.

Without a CUDA GPU the command says so and exits with status 2.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from bench.common import rate
from model.backends import BF16, torch_forward
from model.geometry import box_matrices, gpu_crops

# Throughput target on one H100: faces/s at batch 256, bf16, channels-last (crop + network).
TARGET_FACES_PER_S = 10_000
DEFAULT_BATCH = 256


def pad_images(images: list[np.ndarray]) -> np.ndarray:
    """Stack (H, W, 3) uint8 images of any sizes into (I, 3, Hmax, Wmax), zero-padded bottom-right."""
    height = max(im.shape[0] for im in images)
    width = max(im.shape[1] for im in images)
    out = np.zeros((len(images), 3, height, width), np.uint8)
    for i, im in enumerate(images):
        out[i, :, :im.shape[0], :im.shape[1]] = im.transpose(2, 0, 1)
    return out


def resident_faces(batch: int):
    """(images (I, H, W, 3) list, (batch, 2, 3) crop matrices, (batch,) image index) of the bench's
    synthetic test faces, repeated to ``batch`` faces, cropped as evaluation crops them."""
    from bench.checkpoint import synthetic_root
    from model.formats.wflw import crop_box, find_wflw_root, load_wflw_txt, resolve_image
    from model.image import read_image

    tree = find_wflw_root(synthetic_root())
    samples = load_wflw_txt(tree.annotations("test"))
    images = [read_image(resolve_image(tree.images, s.image)) for s in samples]
    index = np.arange(batch) % len(samples)
    boxes = np.stack([crop_box(s, "landmarks") for s in samples])[index]  # mmpose's evaluation boxes
    return images, box_matrices(boxes), index


def resident_rates(model: torch.nn.Module, batch: int, iters: int, flip: bool = True,
                   compiled: bool = False) -> dict[str, float]:
    """Faces/s of GPU crops, of the network (bf16, channels-last, the mirrors in the same forward
    when ``flip``) and of both, on images resident on the GPU."""
    device = torch.device("cuda")
    model = model.to(device).eval().to(memory_format=torch.channels_last)
    net = torch.compile(model) if compiled else model
    images, matrices, index = resident_faces(batch)
    padded = torch.from_numpy(pad_images(images)).to(device)

    def crop():
        return gpu_crops(padded, matrices, image_index=index)

    @torch.inference_mode()
    def network(crops):
        return torch_forward(net, torch.cat([crops, crops.flip(2)]) if flip else crops, BF16, channels_last=True)

    crops = crop()
    return {"crops": rate(crop, batch, iters), "network": rate(lambda: network(crops), batch, iters),
            "both": rate(lambda: network(crop()), batch, iters)}


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

    torch.backends.cudnn.benchmark = True
    rates = resident_rates(load_regressor(args.weights or bench_checkpoint()), args.batch_size, args.iters,
                           flip=not args.no_flip)
    print(f"device {torch.cuda.get_device_name()}, batch {args.batch_size}, bf16, channels-last, "
          f"flip {'off' if args.no_flip else 'on'}")
    print(f"  GPU crops        {rates['crops']:12,.0f} faces/s")
    print(f"  network          {rates['network']:12,.0f} faces/s")
    print(f"  crops + network  {rates['both']:12,.0f} faces/s  (target {TARGET_FACES_PER_S:,})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
