"""The webcam's live stream: camera frames in, landmarks as data out, on the app's own HTTP server.

The Webcam tab's page (``app/static/live.js``) keeps every frame it sends and draws it with the
answer to that very frame; no picture ever comes back. Routes (``live_routes``, mounted by
``app.__main__`` through ``launch(**launch_options(ctx))``, which puts them in ``app_kwargs``):

- ``POST /live/open``: opens a session. The answer is a stream of JSON lines that stays open as
  long as the session lives: ``{"type": "hello", "session", "mode", "limits", "user"}``, then
  ``{"type": "ping"}`` every ``PING_S``. When it closes (the page stops, reloads, or vanishes)
  the session ends at once and its slot is free.
- ``POST /live/{session}/frame?id=N&smooth=1``: one frame, the encoded image as the body (JPEG,
  PNG or WebP; at most ``LIVE_MAX_FRAME_BYTES`` and ``LIVE_MAX_FRAME_PIXELS``). The answer is
  ``app.webcam.frame_message`` (``"type": "result"``: the ``/predict`` record, the overlay, the
  server's milliseconds), ``{"type": "dropped", "frame": N}`` when a newer frame of the session
  arrived before this one's turn (latest wins), or ``{"type": "error", "frame": N, "message"}``
  with status 400, 404, 413, 429 or 503; after an error the session goes on.

Access: every request must come from the app's own page (its ``Origin`` is this server's host),
and when the app has sign-in (``launch(auth=...)``) from a signed-in user (``stream_user``), the
one who opened the session. At most ``LIVE_MAX_STREAMS`` sessions; each runs one frame at a time in a
shared pool of ``LIVE_MAX_STREAMS`` threads, so every session gets its turn, and the network forwards
of all of them share the inference engine's live class (``app.serving``).

Why HTTP and not a WebSocket: uvicorn (Gradio's server) needs ``websockets`` or ``wsproto`` for
WebSockets and neither is installed; a fetch per frame on a kept-alive connection measured 10 ms
round trips against 7.7 ms for a WebSocket (wsproto), both at the camera's 30 frames/s.
"""
from __future__ import annotations

import asyncio
import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import BaseRoute, Route

from app import webcam
from app.context import AppContext
from app.serving import LIVE_MAX_FRAME_BYTES, LIVE_MAX_FRAME_PIXELS, LIVE_MAX_IN_FLIGHT, LIVE_MAX_STREAMS
from model.engine import EngineError, FrameDropped
from model.image import ImageError, read_image

LIVE_PATH = "/live"
# A body over the limit is read to its end and thrown away (so the client gets its answer) up to
# this many bytes; past them the connection is cut.
MAX_DRAIN_BYTES = 64_000_000
# Seconds between the keep-alive lines of an open session's stream.
PING_S = 10.0


class StreamsBusy(RuntimeError):
    """All ``LIVE_MAX_STREAMS`` sessions are taken."""


# ------------------------------------------------------------------ who may stream

def sign_in_required(app) -> bool:
    """Whether the Gradio app behind a request asks for sign-in (``launch(auth=...)``)."""
    return getattr(app, "auth", None) is not None or getattr(app, "auth_dependency", None) is not None


def stream_user(connection: HTTPConnection) -> str | None:
    """The user signed in to the Gradio app that received ``connection`` (a request or a WebSocket),
    or ``None``: the name Gradio stored for the access-token cookie its ``/login`` set (as
    ``gradio.routes``' ``get_current_user`` reads it)."""
    app = connection.app
    cookie_id = getattr(app, "cookie_id", None)
    if cookie_id is None:
        return None
    token = (connection.cookies.get(f"access-token-{cookie_id}")
             or connection.cookies.get(f"access-token-unsecure-{cookie_id}"))
    return getattr(app, "tokens", {}).get(token) if token else None


def same_origin(connection: HTTPConnection) -> bool:
    """Whether the request's ``Origin`` is the server's own host (what a page of the app sends)."""
    origin, host = connection.headers.get("origin"), connection.headers.get("host")
    return bool(origin and host) and urlsplit(origin).netloc.lower() == host.lower()


def refusal(connection: HTTPConnection) -> JSONResponse | None:
    """The answer to a request that may not use the stream (403 foreign page, 401 not signed
    in), or ``None`` when it may."""
    if not same_origin(connection):
        origin = connection.headers.get("origin")
        return error(403, "the live stream answers this app's own page only: the request's Origin "
                          f"{origin!r} is not this server ({connection.headers.get('host')!r})")
    if sign_in_required(connection.app) and stream_user(connection) is None:
        return error(401, "this app requires sign-in, and so does the live stream: sign in on the page first")
    return None


def error(status: int, message: str, frame: int | None = None) -> JSONResponse:
    """A JSON ``{"type": "error", "frame", "message"}`` answer."""
    return JSONResponse({"type": "error", "frame": frame, "message": message}, status_code=status)


# ------------------------------------------------------------------ sessions

@dataclass(eq=False)
class LiveSession:
    """One page's stream: its tracker state, its user, and the frames it has in flight."""

    id: str
    user: str | None
    state: dict = field(default_factory=webcam.new_session)
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)  # one frame at a time, in arrival order
    newest: int = -1      # the highest frame id that arrived
    in_flight: int = 0    # frame requests not yet answered
    closed: bool = False


class LiveStreams:
    """The open sessions of one app and the threads their frames run in."""

    def __init__(self, ctx: AppContext, max_streams: int = LIVE_MAX_STREAMS) -> None:
        self.ctx = ctx
        self.max_streams = int(max_streams)
        self.sessions: dict[str, LiveSession] = {}
        self.pool = ThreadPoolExecutor(max_workers=self.max_streams, thread_name_prefix="live")

    def open(self, user: str | None) -> LiveSession:
        """A new session; ``StreamsBusy`` when ``max_streams`` are open."""
        if len(self.sessions) >= self.max_streams:
            raise StreamsBusy(f"{len(self.sessions)} live streams are open, the most this server runs "
                              f"(LIVE_MAX_STREAMS={self.max_streams}); try again when one stops")
        session = LiveSession(secrets.token_urlsafe(16), user)
        self.sessions[session.id] = session
        return session

    def close(self, session: LiveSession) -> None:
        """End a session: its slot is free at once; a frame still running is answered into the void."""
        session.closed = True
        self.sessions.pop(session.id, None)

    async def frame(self, session: LiveSession, frame_id: int, data: bytes, smoothing: bool) -> dict:
        """The answer to one frame (``frame_message``, or ``dropped``); ``ImageError`` for a bad image."""
        if frame_id <= session.newest:
            return {"type": "dropped", "frame": frame_id}  # arrived after a newer one
        session.newest = frame_id
        async with session.turn:
            if session.newest != frame_id or session.closed:
                return {"type": "dropped", "frame": frame_id}  # a newer frame came while this one waited
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.pool, self._run, session, frame_id, data, smoothing)

    def _run(self, session: LiveSession, frame_id: int, data: bytes, smoothing: bool) -> dict:
        start = time.perf_counter()
        frame = read_image(data, f"frame {frame_id}", max_pixels=LIVE_MAX_FRAME_PIXELS)
        decode_ms = 1000.0 * (time.perf_counter() - start)
        try:
            live = webcam.track_frame(self.ctx, frame, smoothing, session.state)
        except FrameDropped:
            return {"type": "dropped", "frame": frame_id}
        return webcam.frame_message(frame_id, live, decode_ms)


# ------------------------------------------------------------------ routes

def _hello(streams: LiveStreams, session: LiveSession) -> dict:
    return {"type": "hello", "session": session.id, "mode": webcam.describe_mode(streams.ctx), "user": session.user,
            "limits": {"max_in_flight": LIVE_MAX_IN_FLIGHT, "max_frame_bytes": LIVE_MAX_FRAME_BYTES,
                       "max_frame_pixels": LIVE_MAX_FRAME_PIXELS, "max_streams": streams.max_streams}}


async def _open(streams: LiveStreams, request: Request):
    refused = refusal(request)
    if refused is not None:
        return refused
    try:
        session = streams.open(stream_user(request))
    except StreamsBusy as exc:
        return error(503, str(exc))

    async def lines():
        try:
            yield json.dumps(_hello(streams, session)) + "\n"
            while True:
                await asyncio.sleep(PING_S)
                yield '{"type": "ping"}\n'
        finally:  # the page closed the stream, or its connection died: cancelled right then
            streams.close(session)

    return StreamingResponse(lines(), media_type="application/x-ndjson",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _frame_id(request: Request) -> int:
    text = request.query_params.get("id", "")
    if not text.isdigit() or len(text) > 15:
        raise ValueError(f"the frame id must be a whole number from 0 to 10^15, got {text!r}")
    return int(text)


async def _body(request: Request, limit: int) -> tuple[bytes | None, int]:
    """The request body, or ``None`` when it is over ``limit`` bytes (then read on and thrown away,
    up to ``MAX_DRAIN_BYTES``); and its size in bytes."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > MAX_DRAIN_BYTES:
            break
    return (b"".join(chunks) if size <= limit else None), size


async def _frame(streams: LiveStreams, request: Request):
    refused = refusal(request)
    if refused is not None:
        return refused
    try:
        frame_id = _frame_id(request)
    except ValueError as exc:
        return error(400, str(exc))
    session = streams.sessions.get(request.path_params["session"])
    if session is None or session.user != stream_user(request):
        return error(404, "no open live session by that id (it ended when its page stopped or lost its "
                          "connection); open a new one", frame_id)
    if session.in_flight >= LIVE_MAX_IN_FLIGHT:
        return error(429, f"frame {frame_id}: {LIVE_MAX_IN_FLIGHT} frames of this session are already in "
                          "flight (LIVE_MAX_IN_FLIGHT); send the next one after an answer", frame_id)
    session.in_flight += 1
    try:
        data, size = await _body(request, LIVE_MAX_FRAME_BYTES)
        if data is None:
            return error(413, f"frame {frame_id} is {size} bytes, over the limit of {LIVE_MAX_FRAME_BYTES} bytes "
                              "for one camera frame (LIVE_MAX_FRAME_BYTES)", frame_id)
        smoothing = request.query_params.get("smooth", "1") != "0"
        return JSONResponse(await streams.frame(session, frame_id, data, smoothing))
    except ImageError as exc:
        return error(400, str(exc), frame_id)
    except EngineError as exc:  # the engine's queue is full or it timed out: this frame only
        return error(503, f"frame {frame_id}: {exc}", frame_id)
    finally:
        session.in_flight -= 1


def live_routes(ctx: AppContext, max_streams: int = LIVE_MAX_STREAMS) -> list[BaseRoute]:
    """The stream's routes over ``ctx`` (one ``LiveStreams``), for ``launch(app_kwargs={"routes": ...})``."""
    streams = LiveStreams(ctx, max_streams)

    async def open_stream(request: Request):
        return await _open(streams, request)

    async def frame(request: Request):
        return await _frame(streams, request)

    return [Route(f"{LIVE_PATH}/open", open_stream, methods=["POST"]),
            Route(f"{LIVE_PATH}/{{session}}/frame", frame, methods=["POST"])]


def launch_options(ctx: AppContext, options: dict | None = None) -> dict:
    """Keywords for ``demo.launch``: ``options`` (e.g. sign-in's, which may carry ``app_kwargs`` of
    its own) with the stream's routes added to ``app_kwargs["routes"]``."""
    options = dict(options or {})
    app_kwargs = dict(options.get("app_kwargs") or {})
    app_kwargs["routes"] = [*app_kwargs.get("routes", []), *live_routes(ctx)]
    return {**options, "app_kwargs": app_kwargs}
