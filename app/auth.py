"""Sign-in for a shared server: Gradio's own login over the accounts of ``app.users``.

``python -m app --auth-file FILE`` hands ``SignIn(FILE).launch_options()`` to ``demo.launch``:

- ``auth=SignIn.check``: Gradio's login page and ``POST /login`` call it; Gradio then guards every
  page, API route, upload, file and the queue with its sign-in cookie, and callbacks see the
  account as ``gr.Request.username``. The password check is constant-time, and an unknown name
  costs the same scrypt work as a known one.
- ``SignInGuard``, an ASGI middleware on the app, sees the client address that Gradio's login route
  does not: after ``MAX_FAILURES`` refused sign-ins from one address within ``WINDOW_S`` seconds,
  that address is refused for ``LOCKOUT_S`` seconds without its password being checked. It also
  ends the sessions of accounts removed from the file while the server runs.

The accounts file is read again whenever it changes, so ``python -m app.users add`` and ``remove``
take effect without a restart. A file that turns unreadable refuses every sign-in until it is fixed.
"""
from __future__ import annotations

import asyncio
import contextvars
import html
import ipaddress
import logging
import math
import os
import secrets
import threading
import time
from collections import deque
from pathlib import Path

from starlette.middleware import Middleware
from starlette.responses import JSONResponse

from app.users import hash_password, read_accounts

log = logging.getLogger(__name__)

# After this many refused sign-ins from one address within WINDOW_S seconds, the address is
# refused for LOCKOUT_S seconds.
MAX_FAILURES = 5
WINDOW_S = 60.0
LOCKOUT_S = 60.0
# Addresses whose failures are tracked before old entries are dropped.
MAX_TRACKED = 4096
SIGN_IN_MESSAGE = ("Sign in to Landmark Studio with the account the server's administrator made for you. "
                   f"After {MAX_FAILURES} wrong passwords within {WINDOW_S:.0f} s from one address, sign-in from "
                   f"there is refused for {LOCKOUT_S:.0f} s.")

# The address of the request being handled, set by SignInGuard for SignIn.check's log lines.
_CLIENT: contextvars.ContextVar[str] = contextvars.ContextVar("sign_in_client", default="unknown address")


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only."""
    host = (host or "").strip()
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost, or nothing: reachable from elsewhere
        return False


class AccountBook:
    """The accounts file, read again when its size, time or inode changes.

    Args:
        path: the file of ``app.users``; it must exist and hold at least one account now.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._accounts = read_accounts(self.path)
        if not self._accounts:
            raise ValueError(f"{self.path} holds no account: add one with "
                             f"`python -m app.users add NAME --file {self.path}`")
        self.version = 1  # goes up at every reload (SignInGuard ends removed accounts' sessions then)
        # Unknown names are checked against this hash, so that they cost the same scrypt work.
        self._decoy = hash_password(secrets.token_urlsafe(16))

    def _stat(self):
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def accounts(self) -> dict:
        """``{name: app.users.PasswordHash}`` as the file holds them now (``{}`` while it is unreadable)."""
        stamp = self._stat()
        with self._lock:
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._accounts = read_accounts(self.path)
                except (OSError, ValueError) as exc:
                    log.error("accounts file unreadable, every sign-in is refused until it is fixed: %s", exc)
                    self._accounts = {}
                self.version += 1
            return self._accounts

    def verify(self, name: str, password: str) -> bool:
        """Whether ``password`` is ``name``'s; the same scrypt work (and a constant-time compare)
        whether or not the account exists."""
        entry = self.accounts().get(name)
        matched = (entry or self._decoy).matches(password)
        return entry is not None and matched


class LoginThrottle:
    """Refused sign-ins per client address, and which addresses are locked out.

    Args:
        max_failures, window_s, lockout_s: ``max_failures`` refusals within ``window_s`` seconds
            lock an address for ``lockout_s`` seconds.
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(self, max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S,
                 lockout_s: float = LOCKOUT_S, clock=time.monotonic) -> None:
        if max_failures < 1 or window_s <= 0 or lockout_s <= 0:
            raise ValueError(f"need max_failures >= 1 and positive window and lockout, got "
                             f"{max_failures}, {window_s}, {lockout_s}")
        self.max_failures, self.window_s, self.lockout_s, self.clock = max_failures, window_s, lockout_s, clock
        self._failures: dict[str, deque] = {}
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def locked_for(self, address: str) -> float:
        """Seconds until ``address`` may try again (0: it may now)."""
        with self._lock:
            left = self._locked_until.get(address, 0.0) - self.clock()
            if left <= 0:
                self._locked_until.pop(address, None)
            return max(left, 0.0)

    def failed(self, address: str) -> int:
        """Record a refused sign-in; returns the refusals within the window (the last locks the address)."""
        now = self.clock()
        with self._lock:
            if len(self._failures) >= MAX_TRACKED:
                self._forget_before(now - self.window_s)
            times = self._failures.setdefault(address, deque())
            times.append(now)
            while times and times[0] <= now - self.window_s:
                times.popleft()
            count = len(times)
            if count >= self.max_failures:
                self._locked_until[address] = now + self.lockout_s
                del self._failures[address]
            return count

    def succeeded(self, address: str) -> None:
        """A sign-in went through: forget the address's earlier refusals."""
        with self._lock:
            self._failures.pop(address, None)

    def _forget_before(self, cutoff: float) -> None:
        for address in [a for a, t in self._failures.items() if not t or t[-1] <= cutoff]:
            del self._failures[address]
        for address in [a for a, until in self._locked_until.items() if until <= cutoff]:
            del self._locked_until[address]


def _client(scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown address"


class SignInGuard:
    """ASGI middleware: the lock-out on Gradio's ``POST /login``, and the end of removed accounts' sessions."""

    def __init__(self, app, book: AccountBook, throttle: LoginThrottle) -> None:
        self.app, self.book, self.throttle = app, book, throttle
        self._seen_version = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        self._end_removed_sessions(scope.get("app"))
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].rstrip("/").endswith("/login"):
            return await self.app(scope, receive, send)
        address = _client(scope)
        _CLIENT.set(address)
        left = self.throttle.locked_for(address)
        if left > 0:
            log.warning("sign-in from %s refused without a password check: locked out for another %.0f s",
                        address, left)
            wait = math.ceil(left)
            response = JSONResponse({"detail": f"Too many failed sign-ins from this address: try again in {wait} s."},
                                    status_code=400, headers={"Retry-After": str(wait)})
            return await response(scope, receive, send)
        status = {}

        async def send_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        await self.app(scope, receive, send_status)
        if status.get("code") == 400:  # Gradio's "Incorrect credentials."
            if self.throttle.failed(address) >= self.throttle.max_failures:
                log.warning("sign-in from %s locked out for %.0f s after %d refused sign-ins within %.0f s",
                            address, self.throttle.lockout_s, self.throttle.max_failures, self.throttle.window_s)
        elif status.get("code") == 200:
            self.throttle.succeeded(address)

    def _end_removed_sessions(self, app) -> None:
        """Drop Gradio's sign-in tokens of accounts no longer in the file (as its /logout drops a user's)."""
        names = self.book.accounts()
        tokens = getattr(app, "tokens", None)
        if self.book.version == self._seen_version or tokens is None:
            return
        self._seen_version = self.book.version
        for token, user in list(tokens.items()):
            if user not in names:
                tokens.pop(token, None)
                log.info("session of %r ended: the account is no longer in %s", user, self.book.path)


class SignIn:
    """Sign-in of one server: the accounts of ``path``, Gradio's login and the guard.

    Args:
        path: the accounts file (``python -m app.users``).
        throttle: the lock-out policy (default: ``MAX_FAILURES`` in ``WINDOW_S`` locks for ``LOCKOUT_S``).
    """

    def __init__(self, path: str | os.PathLike, throttle: LoginThrottle | None = None) -> None:
        self.book = AccountBook(path)
        self.throttle = throttle or LoginThrottle()

    async def check(self, username: str, password: str) -> bool:
        """Gradio's ``auth`` callable: scrypt runs in a worker thread, so the server keeps serving."""
        address = _CLIENT.get()
        ok = await asyncio.to_thread(self.book.verify, username, password)
        if ok:
            log.info("signed in: %r from %s", username, address)
        else:
            known = username in self.book.accounts()
            log.warning("sign-in refused for %r from %s: %s", username, address,
                        "wrong password" if known else "no such account")
        return ok

    def launch_options(self) -> dict:
        """Keyword arguments of ``demo.launch`` that turn sign-in on."""
        return {"auth": self.check, "auth_message": SIGN_IN_MESSAGE,
                "app_kwargs": {"middleware": [Middleware(SignInGuard, book=self.book, throttle=self.throttle)]}}


def account(request) -> str | None:
    """The signed-in account that sent a ``gr.Request`` (``None`` when the server has no sign-in)."""
    return getattr(request, "username", None) or None


def signed_in_html(name: str) -> str:
    """"Signed in as NAME · Sign out" (HTML: a Markdown link would open a new tab), with Gradio's
    sign-out link."""
    return f'Signed in as <b>{html.escape(name)}</b> · <a href="logout">Sign out</a>'
