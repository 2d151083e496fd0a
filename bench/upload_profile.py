"""Where an upload's time goes: decode, each MTCNN stage, crops, network, points, drawing.

``python -m bench.gpu --profile-upload`` prints it on any device; ``bench.gpu_table``'s upload row
reports its medians on the GPU.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from bench.common import timed
from model.image import read_image
from model.pipeline import Predictor

UPLOAD_STAGES = ("decode", "P-net", "R-net", "O-net", "MTCNN rest", "crops", "network", "points", "draw")


class _NetClock:
    """Milliseconds spent in each MTCNN stage's forward (hooks on P-, R- and O-net), GPU-synchronised."""

    def __init__(self, networks: dict[str, torch.nn.Module], device: torch.device) -> None:
        self.ms = dict.fromkeys(networks, 0.0)
        self.device = device
        self.handles = []
        for name, net in networks.items():
            self.handles.append(net.register_forward_pre_hook(self._start))
            self.handles.append(net.register_forward_hook(self._stop(name)))

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _start(self, module, args) -> None:
        self._sync()
        self._t0 = time.perf_counter()

    def _stop(self, name: str):
        def hook(module, args, out) -> None:
            self._sync()
            self.ms[name] += 1000 * (time.perf_counter() - self._t0)
        return hook

    def reset(self) -> None:
        self.ms = dict.fromkeys(self.ms, 0.0)

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def upload_stages(predictor: Predictor, encoded: bytes, clock: _NetClock) -> dict[str, float]:
    """One upload's milliseconds by stage (``UPLOAD_STAGES``), as ``Predictor.predict`` + ``draw_faces``
    run them: decode, detection (its three networks and the rest), crops, network (flip test
    included), points back to the image, drawing."""
    from model.draw import draw_faces

    device = predictor.device
    ms: dict[str, float] = {}
    image, ms["decode"] = timed(lambda: read_image(encoded), device)
    clock.reset()
    detections, detect_ms = timed(lambda: predictor.detect(image), device)
    ms.update(clock.ms)
    ms["MTCNN rest"] = detect_ms - sum(clock.ms.values())
    stages: dict[str, float] = {}  # crops, network (flip test included), points back to the image
    faces = predictor.faces_from_detections(image, detections, timings=stages)
    ms.update(stages)
    _, ms["draw"] = timed(lambda: draw_faces(image, faces), device)
    ms["faces"] = len(faces)
    return ms


def profile_upload(predictor: Predictor, photos: list[Path], repeats: int = 3) -> list[dict]:
    """Per photo, the median over ``repeats`` runs (after one warm-up) of each upload stage in ms.

    Returns:
        one dict per photo: "photo" (file name), "size" (w x h), "faces", each of ``UPLOAD_STAGES``,
        "total" (their sum) and "predict" (``Predictor.predict`` + drawing timed as one call, a
        check on the sum).
    """
    from model.draw import draw_faces

    clock = _NetClock(predictor.detector.networks, predictor.device)
    rows = []
    try:
        for path in photos:
            encoded = path.read_bytes()
            image = read_image(encoded)
            upload_stages(predictor, encoded, clock)  # warm-up (cuDNN plans, allocator)
            runs = [upload_stages(predictor, encoded, clock) for _ in range(repeats)]
            row = {"photo": path.name, "size": f"{image.shape[1]}x{image.shape[0]}", "faces": runs[0]["faces"]}
            for stage in UPLOAD_STAGES:
                row[stage] = statistics.median(r[stage] for r in runs)
            row["total"] = statistics.median(sum(r[s] for s in UPLOAD_STAGES) for r in runs)
            row["predict"] = statistics.median(
                timed(lambda: draw_faces(image, predictor.predict(read_image(encoded))), predictor.device)[1]
                for _ in range(repeats))
            rows.append(row)
    finally:
        clock.close()
    return rows


def format_upload_profile(rows: list[dict], title: str) -> str:
    """The profile as a text table, one line per photo and a median line."""
    columns = ("faces", *UPLOAD_STAGES, "total", "predict")
    width = 9
    lines = [title, "photo".ljust(34) + "size".rjust(10) + "".join(c.rjust(width + 2) for c in columns)]
    for row in rows:
        lines.append(row["photo"][:34].ljust(34) + row["size"].rjust(10) + "".join(
            (f"{row[c]:d}" if c == "faces" else f"{row[c]:.1f}").rjust(width + 2) for c in columns))
    if rows:
        medians = [statistics.median(r[c] for r in rows) for c in columns]
        lines.append("median".ljust(44) + "".join(
            (f"{m:.0f}" if c == "faces" else f"{m:.1f}").rjust(width + 2) for c, m in zip(columns, medians)))
    lines.append("ms per photo; 'total' sums the stages, 'predict' times Predictor.predict + drawing as one call")
    return "\n".join(lines)
