"""AppContext and the serving policy: one engine, the views the tabs use, nothing left behind.

The download folder is checked with real processes: one that exits normally (its folder is gone)
and one that is SIGKILLed (its folder stays until the next start removes it).
"""
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from app import serving
from app.context import AppContext, remove_stale_output_dirs
from model.engine import EngineRunner
from model.pipeline import Predictor
from tests.helpers import constant_regressor, engine_threads

REPO = Path(__file__).resolve().parents[2]
# Builds a detector-only context (no model: nothing heavy), prints its folder, then either exits
# normally or waits to be killed.
CHILD = """
import sys, threading
from app.context import AppContext
ctx = AppContext(predictor=None, detector=None)
(ctx.output_dir / "download.json").write_text("{}")
print(ctx.output_dir, flush=True)
if sys.argv[1] == "wait":
    threading.Event().wait(120)
"""


@pytest.fixture(scope="module")
def predictor(detector):
    model = constant_regressor(np.random.default_rng(0).uniform(0.25, 0.75, (98, 2)))
    return Predictor(weights=model, device="cpu", detector=detector, backend="torch")


def test_the_views_share_one_engine_and_close_stops_it(predictor, detector):
    before = len(engine_threads())
    ctx = AppContext(predictor=predictor, detector=detector)
    assert len(engine_threads()) == before + 1
    views = {"stills": ctx.predictor, "stream": ctx.stream_predictor("webcam-3"), "video": ctx.live_predictor,
             "batch": ctx.batch_predictor}
    for view in views.values():
        assert isinstance(view.runner, EngineRunner) and view.runner.engine is ctx.engine
        assert view.parts is predictor.parts and view.detector is detector
    assert (views["stills"].runner.priority, views["stills"].runner.slot, views["stills"].flip_test) == (
        serving.STILLS, None, True)
    assert (views["stream"].runner.priority, views["stream"].runner.slot, views["stream"].flip_test) == (
        serving.LIVE, "webcam-3", False)
    assert (views["video"].runner.priority, views["video"].runner.slot, views["video"].flip_test) == (
        serving.LIVE, None, False)
    assert (views["batch"].runner.priority, views["batch"].flip_test) == (serving.BATCH, True)
    assert predictor.runner is predictor.parts  # the predictor given is left as it was
    image = np.full((200, 200, 3), 120, np.uint8)
    boxes = np.array([[50.0, 50.0, 150.0, 150.0]])
    np.testing.assert_allclose(views["batch"].predict_boxes(image, boxes), predictor.predict_boxes(image, boxes),
                               atol=1e-3)
    assert ctx.engine.forwards == 1 and list(ctx.engine.leaders) == [serving.BATCH]
    folder = ctx.output_dir
    assert folder.name.startswith(f"landmark-studio-{os.getpid()}-") and folder.is_dir()
    ctx.close()
    ctx.close()  # idempotent
    assert len(engine_threads()) == before and not folder.exists()


def test_detector_only_context_has_no_engine_and_keeps_a_given_folder(tmp_path):
    ctx = AppContext(predictor=None, detector=None, output_dir=tmp_path)
    assert ctx.engine is None and ctx.stream_predictor("x") is None and ctx.batch_predictor is None
    assert ctx.live_predictor is None
    ctx.close()
    assert tmp_path.is_dir()  # not ours to remove


def _child(mode: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, mode], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))


def test_download_folder_is_removed_at_exit_and_a_killed_servers_at_the_next_start():
    done = _child("exit")
    folder = Path(done.stdout.readline().strip())
    assert done.wait(120) == 0
    assert folder.name.startswith(f"landmark-studio-{done.pid}-") and not folder.exists()

    killed = _child("wait")
    stale = Path(killed.stdout.readline().strip())
    assert (stale / "download.json").is_file()
    killed.send_signal(signal.SIGKILL)
    killed.wait(30)
    assert stale.exists()  # SIGKILL runs no exit handler
    unrelated = Path(tempfile.mkdtemp(prefix="landmark-studio-test-cache-"))  # not a server's folder
    try:
        ctx = AppContext(predictor=None, detector=None)  # the next start
        assert not stale.exists() and unrelated.exists() and ctx.output_dir.exists()
        ctx.close()
        assert remove_stale_output_dirs() == []
    finally:
        unrelated.rmdir()


def test_a_terminated_server_removes_its_download_folder(start_app, tmp_path):
    # SIGTERM (what `kill` and service managers send) exits through sys.exit, so the clean-up runs.
    env = {"TORCH_HOME": str(tmp_path / "torch"),
           "HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    server = start_app(["--device", "cpu"], env=env)
    folders = list(Path(tempfile.gettempdir()).glob(f"landmark-studio-{server.proc.pid}-*"))
    assert len(folders) == 1 and folders[0].is_dir()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(60) == 0, server.log()
    assert not folders[0].exists()
