"""app.users: the accounts file holds salted scrypt hashes (never a password), mode 0600, written
atomically; the CLI adds, lists and removes accounts, from stdin or a real terminal; bad names,
short passwords, duplicates, missing accounts and malformed lines get messages that name them."""
from __future__ import annotations

import io
import os
import pty
import re
import stat
import subprocess
import sys

import pytest

from app.users import MIN_PASSWORD_LENGTH, add_account, check_name, main, read_accounts, remove_account
from tests.helpers import REPO

PASSWORD = "correct horse battery"


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """``python -m app.users ARGS`` as a process (it imports torch through model.io: seconds)."""
    return subprocess.run([sys.executable, "-m", "app.users", *args], cwd=REPO, input=stdin, capture_output=True,
                          text=True, timeout=300)


def _main(monkeypatch, capsys, *args: str, stdin: str = "") -> tuple[int, str, str]:
    """``app.users.main(ARGS)`` in this process, ``stdin`` as its standard input: (status, stdout, stderr)."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_round_trip_keeps_only_hashes(tmp_path, monkeypatch, capsys):
    path = tmp_path / "users.txt"
    added = _cli("add", "ana", "--file", str(path), "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0 and f"account 'ana' added to {path}" in added.stdout, added.stderr
    assert _main(monkeypatch, capsys, "add", "ben.b@lab", "--file", str(path), "--password-stdin",
                 stdin="another secret\n")[0] == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert PASSWORD not in text and "another secret" not in text
    assert _main(monkeypatch, capsys, "list", "--file", str(path))[1].split() == ["ana", "ben.b@lab"]

    accounts = read_accounts(path)
    assert accounts["ana"].matches(PASSWORD) and not accounts["ana"].matches(PASSWORD + " ")
    assert not accounts["ana"].matches("another secret") and accounts["ben.b@lab"].matches("another secret")
    # salted: the same password twice gives two different keys
    add_account(path, "cy", PASSWORD)
    assert read_accounts(path)["cy"].key != accounts["ana"].key and read_accounts(path)["cy"].salt != accounts["ana"].salt
    line = next(row for row in text.splitlines() if row.startswith("ana:"))
    assert line.split(":")[1:5] == ["scrypt", "32768", "8", "1"]  # the parameters travel with the hash

    code, out, _ = _main(monkeypatch, capsys, "remove", "ana", "--file", str(path))
    assert code == 0 and "removed" in out
    assert list(read_accounts(path)) == ["ben.b@lab", "cy"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["users.txt"]  # no temporary left beside it


def test_cli_refuses_with_clear_messages(tmp_path, monkeypatch, capsys):
    path = tmp_path / "users.txt"
    add_account(path, "ana", PASSWORD)
    before = path.read_bytes()
    cases = [
        (("add", "ana", "--password-stdin"), PASSWORD, "account 'ana' already exists"),
        (("add", "bo b", "--password-stdin"), PASSWORD, "without spaces or ':'"),
        (("add", "bob:x", "--password-stdin"), PASSWORD, "without spaces or ':'"),
        (("add", "#bob", "--password-stdin"), PASSWORD, "not starting with '#'"),
        (("add", "bob", "--password-stdin"), "", "password is empty"),
        (("add", "bob", "--password-stdin"), "short", f"at least {MIN_PASSWORD_LENGTH} characters, got 5"),
        (("remove", "zed"), None, f"no account 'zed' in {path} (accounts: ana)"),
    ]
    for args, stdin, message in cases:
        code, _, err = _main(monkeypatch, capsys, *args, "--file", str(path), stdin=(stdin or "") + "\n")
        assert code == 1 and message in err, (args, err)
        assert not stdin or len(stdin) < 3 or stdin not in err  # a password is never echoed
    assert path.read_bytes() == before
    code, _, err = _main(monkeypatch, capsys, "list", "--file", str(tmp_path / "none.txt"))
    assert code == 1 and "no accounts file" in err and "python -m app.users add" in err


def test_malformed_lines_name_the_file_and_line(tmp_path, monkeypatch, capsys):
    path = tmp_path / "users.txt"
    add_account(path, "ana", PASSWORD)
    good = path.read_text()
    bad_lines = {
        "ben:scrypt:32768:8:1:c2FsdA==": "expected NAME:scrypt:N:r:p:SALT:KEY (7 fields separated by ':'), got 6 fields",
        "ben:bcrypt:32768:8:1:c2FsdA==:a2V5": "unknown hash scheme 'bcrypt'",
        "ben:scrypt:1000:8:1:c2FsdA==:a2V5": "N must be a power of 2",
        "ben:scrypt:32768:8:1:not base64!:a2V5": "SALT and KEY base64",
        "ben:scrypt:x:8:1:c2FsdA==:a2V5": "whole numbers",
        " ben:scrypt:32768:8:1:c2FsdA==:a2V5": "account name must be",
    }
    for line, message in bad_lines.items():
        path.write_text(good + "\n" + line + "\n")
        number = len(good.splitlines()) + 2
        with pytest.raises(ValueError, match=f"users.txt line {number}: .*" + re.escape(message)):
            read_accounts(path)
    ana_line = next(row for row in good.splitlines() if row.startswith("ana:"))
    path.write_text(good + ana_line + "\n")
    with pytest.raises(ValueError, match=r"line 4: account 'ana' is listed twice"):
        read_accounts(path)
    code, _, err = _main(monkeypatch, capsys, "list", "--file", str(path))
    assert code == 1 and f"{path} line 4" in err


def test_password_typed_twice_at_a_terminal(tmp_path):
    """The interactive path, through a real pseudo-terminal: getpass twice, then a mismatch refused."""
    path = tmp_path / "users.txt"
    for second, code in ((PASSWORD, 0), (PASSWORD + "x", 1)):
        name = "ana" if code == 0 else "ben"
        main_fd, child_fd = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "app.users", "add", name, "--file", str(path)], cwd=REPO,
                                stdin=child_fd, stdout=child_fd, stderr=child_fd, start_new_session=True)
        os.close(child_fd)
        output = _answer(main_fd, [b"Password: ", b"Password again: "], [PASSWORD, second])
        assert proc.wait(timeout=120) == code, output
        os.close(main_fd)
        assert PASSWORD not in output  # getpass does not echo
        if code == 1:
            assert "the two passwords differ; nothing was changed" in output
    assert list(read_accounts(path)) == ["ana"] and read_accounts(path)["ana"].matches(PASSWORD)


def _answer(fd: int, prompts: list[bytes], answers: list[str]) -> str:
    """Read the terminal until each prompt appears and type its answer; returns all output."""
    seen = b""
    for prompt, answer in zip(prompts, answers):
        while not seen.endswith(prompt):
            seen += os.read(fd, 1024)
        os.write(fd, answer.encode() + b"\n")
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    return seen.decode(errors="replace")


def test_name_rules():
    for good in ("ana", "ben.b@lab", "Zoë", "x" * 64, "a#b"):
        assert check_name(good) == good
    for bad, message in (("", "empty"), ("x" * 65, "1 to 64"), ("a b", "spaces"), ("a\tb", "spaces"),
                         ("a:b", "':'"), ("#a", "'#'"), ("a\x00b", "printable")):
        with pytest.raises(ValueError, match=message):
            check_name(bad)


def test_remove_from_a_missing_file_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no accounts file"):
        remove_account(tmp_path / "users.txt", "ana")
