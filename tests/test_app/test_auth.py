"""app.auth without a server: the lock-out's arithmetic on a hand-driven clock, loopback addresses,
the accounts read again when the file changes, unknown names costing the same scrypt work, and
`python -m app` refusing to serve other machines without accounts (exit 2)."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
import hashlib
import logging
import subprocess
import sys

import pytest

from app import users
from app.__main__ import parse_args
from app.auth import AccountBook, LoginThrottle, SignIn, is_loopback
from app.users import add_account, remove_account
from tests.helpers import REPO

PASSWORD = "correct horse battery"


class Clock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_five_failures_in_a_minute_lock_an_address_for_a_minute():
    clock = Clock()
    throttle = LoginThrottle(max_failures=5, window_s=60, lockout_s=60, clock=clock)
    # four failures 10 s apart, then the first drops out of the window: still free
    for _ in range(4):
        assert throttle.failed("10.0.0.5") < 5 and throttle.locked_for("10.0.0.5") == 0
        clock.now += 10
    clock.now += 21  # the first failure (t=1000) is now 61 s old
    assert throttle.failed("10.0.0.5") == 4 and throttle.locked_for("10.0.0.5") == 0
    assert throttle.failed("10.0.0.5") == 5  # five within 60 s: locked
    assert throttle.locked_for("10.0.0.5") == pytest.approx(60)
    assert throttle.locked_for("10.0.0.6") == 0  # another address is not affected
    clock.now += 45
    assert throttle.locked_for("10.0.0.5") == pytest.approx(15)
    clock.now += 15
    assert throttle.locked_for("10.0.0.5") == 0
    # after the lock, counting starts again from nothing
    assert throttle.failed("10.0.0.5") == 1
    # a successful sign-in forgets earlier failures
    for _ in range(3):
        throttle.failed("10.0.0.7")
    throttle.succeeded("10.0.0.7")
    assert throttle.failed("10.0.0.7") == 1
    with pytest.raises(ValueError, match="max_failures >= 1"):
        LoginThrottle(max_failures=0)


def test_loopback_addresses():
    for host in ("127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "::1", "[::1]"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "example.org", "", "studio.local"):
        assert not is_loopback(host), host


def test_account_book_follows_the_file_and_spends_the_same_work_on_unknown_names(tmp_path, monkeypatch):
    path = tmp_path / "users.txt"
    add_account(path, "ana", PASSWORD)
    book = AccountBook(path)
    calls = []
    real = hashlib.scrypt

    def counting_scrypt(*args, **kwargs):
        calls.append(kwargs["n"])
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting_scrypt)
    assert book.verify("ana", PASSWORD) and not book.verify("ana", "wrong password")
    assert not book.verify("nobody", PASSWORD)
    assert calls == [users.SCRYPT_N] * 3  # the unknown name ran scrypt too, at the same cost
    monkeypatch.setattr(hashlib, "scrypt", real)

    version = book.version
    add_account(path, "ben", "ben's password")
    assert book.verify("ben", "ben's password") and book.version == version + 1
    remove_account(path, "ana")
    assert not book.verify("ana", PASSWORD) and set(book.accounts()) == {"ben"}
    path.write_text(path.read_text() + "broken line\n")  # hand-edited into a bad state: nobody signs in
    assert book.accounts() == {} and not book.verify("ben", "ben's password")


def test_account_book_refuses_an_empty_or_missing_file(tmp_path):
    path = tmp_path / "users.txt"
    with pytest.raises(FileNotFoundError, match="no accounts file"):
        AccountBook(path)
    add_account(path, "ana", PASSWORD)
    remove_account(path, "ana")
    with pytest.raises(ValueError, match="holds no account: add one with `python -m app.users add NAME"):
        AccountBook(path)


def _run(coroutine):
    """``asyncio.run`` on a thread of its own: the browser tests' Playwright keeps an event loop
    running on the main thread for the whole session."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def test_sign_in_check_logs_the_outcome_never_the_password(tmp_path, caplog):
    path = tmp_path / "users.txt"
    add_account(path, "ana", PASSWORD)
    sign_in = SignIn(path)
    with caplog.at_level(logging.INFO, logger="app.auth"):
        assert _run(sign_in.check("ana", PASSWORD)) is True
        assert _run(sign_in.check("ana", "not the password")) is False
        assert _run(sign_in.check("mallory", "guess one")) is False
    text = caplog.text
    assert "signed in: 'ana'" in text and "refused for 'ana'" in text and "wrong password" in text
    assert "refused for 'mallory'" in text and "no such account" in text
    assert PASSWORD not in text and "not the password" not in text and "guess one" not in text
    options = sign_in.launch_options()
    assert options["auth"] == sign_in.check and "5 wrong passwords within 60 s" in options["auth_message"]
    assert len(options["app_kwargs"]["middleware"]) == 1


def test_non_loopback_host_needs_accounts_or_no_auth(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "app", "--host", "0.0.0.0", "--port", "1"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "--host 0.0.0.0 lets other machines reach the app" in proc.stderr
    assert "python -m app.users add NAME --file users.txt" in proc.stderr and "--no-auth" in proc.stderr
    # the same decision, in-process: loopback is as easy as before; --auth-file or --no-auth open the rest
    assert parse_args([]).host == "127.0.0.1" and parse_args(["--host", "localhost"]).auth_file is None
    assert parse_args(["--host", "0.0.0.0", "--no-auth"]).no_auth
    assert str(parse_args(["--host", "0.0.0.0", "--auth-file", "u.txt"]).auth_file) == "u.txt"
    with pytest.raises(SystemExit) as exc:
        parse_args(["--host", "192.168.1.20"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        parse_args(["--auth-file", "u.txt", "--no-auth"])  # one or the other


def test_a_bad_accounts_file_stops_the_start(tmp_path):
    path = tmp_path / "users.txt"
    path.write_text("ana:scrypt:32768:8:1:c2FsdA==\n")
    proc = subprocess.run([sys.executable, "-m", "app", "--auth-file", str(path), "--port", "1"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert f"--auth-file: {path} line 1: expected NAME:scrypt:N:r:p:SALT:KEY" in proc.stderr
