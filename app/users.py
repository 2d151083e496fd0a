"""Accounts of a shared app server: a text file of names and salted scrypt hashes, never passwords.

    python -m app.users add NAME [--file users.txt] [--password-stdin]
    python -m app.users remove NAME [--file users.txt]
    python -m app.users list [--file users.txt]

One account per line, ``NAME:scrypt:N:r:p:SALT:KEY`` (salt and key in base64), so that the cost
parameters travel with each hash and can be raised later without breaking older lines. Blank lines
and lines starting with ``#`` are ignored. The file is written atomically (``model.io.atomic_write``)
with mode 0600. ``python -m app --auth-file FILE`` reads it (``app.auth``).
"""
from __future__ import annotations

import argparse
import base64
import binascii
import getpass
import hashlib
import hmac
import os
import re
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from model.io import atomic_write

DEFAULT_FILE = Path("users.txt")
# scrypt cost: N = 2**15, r = 8, p = 1 (32 MiB and about 0.1-0.2 s per check on one core), salt and
# key sizes in bytes. Each line stores its own N, r, p; these apply to new passwords.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 15, 8, 1
SALT_BYTES, KEY_BYTES = 16, 32
MIN_PASSWORD_LENGTH = 8
MAX_NAME_LENGTH = 64
SCHEME = "scrypt"
# Names: printable, no whitespace and no ':' (the field separator), not starting with '#' (a comment).
_NAME = re.compile(r"^[^\s:#][^\s:]*$")
_HEADER = ("# Landmark Studio accounts (python -m app.users): NAME:scrypt:N:r:p:SALT:KEY, base64 salt and key.\n"
           "# Passwords are not stored; only their salted scrypt hashes.\n")


@dataclass(frozen=True)
class PasswordHash:
    """One stored hash: the scrypt parameters, the salt and the derived key."""

    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    def matches(self, password: str) -> bool:
        """Whether ``password`` gives this key (compared in constant time)."""
        return hmac.compare_digest(scrypt(password, self.salt, self.n, self.r, self.p, len(self.key)), self.key)

    def line(self, name: str) -> str:
        salt, key = (base64.b64encode(b).decode("ascii") for b in (self.salt, self.key))
        return f"{name}:{SCHEME}:{self.n}:{self.r}:{self.p}:{salt}:{key}"


def scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    """The scrypt key of UTF-8 ``password``; the memory cap is raised to what N and r need (128 * r * N
    bytes and some slack: OpenSSL's default cap, 32 MiB, refuses N = 2**15 with r = 8)."""
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=length,
                          maxmem=128 * r * (n + p) + 2 ** 20)


def check_name(name: str) -> str:
    """``name`` if it can name an account; ``ValueError`` saying what is wrong otherwise."""
    if not isinstance(name, str) or not name:
        raise ValueError("account name is empty")
    if len(name) > MAX_NAME_LENGTH or not name.isprintable() or not _NAME.match(name):
        raise ValueError(f"account name must be 1 to {MAX_NAME_LENGTH} printable characters without spaces "
                         f"or ':' and not starting with '#', got {name!r}")
    return name


def check_password(password: str) -> str:
    """``password`` if it is long enough; ``ValueError`` otherwise (the message never repeats it)."""
    if not password:
        raise ValueError("password is empty")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must have at least {MIN_PASSWORD_LENGTH} characters, got {len(password)}")
    return password


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> PasswordHash:
    """A new random salt and the scrypt key of ``password`` under it."""
    salt = secrets.token_bytes(SALT_BYTES)
    return PasswordHash(n, r, p, salt, scrypt(password, salt, n, r, p, KEY_BYTES))


def parse_line(line: str, where: str) -> tuple[str, PasswordHash]:
    """(name, hash) of one account line; ``ValueError`` naming ``where`` (file and line) otherwise."""
    fields = line.split(":")
    if len(fields) != 7:
        raise ValueError(f"{where}: expected NAME:{SCHEME}:N:r:p:SALT:KEY (7 fields separated by ':'), "
                         f"got {len(fields)} field{'s' if len(fields) != 1 else ''}")
    name, scheme, n, r, p, salt, key = fields
    try:
        check_name(name)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if scheme != SCHEME:
        raise ValueError(f"{where}: unknown hash scheme {scheme!r}, expected {SCHEME!r}")
    try:
        n, r, p = int(n), int(r), int(p)
        salt, key = base64.b64decode(salt, validate=True), base64.b64decode(key, validate=True)
    except (ValueError, binascii.Error):
        raise ValueError(f"{where}: N, r and p must be whole numbers and SALT and KEY base64") from None
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or not salt or not key:
        raise ValueError(f"{where}: N must be a power of 2 above 1, r and p at least 1, SALT and KEY not empty")
    return name, PasswordHash(n, r, p, salt, key)


def read_accounts(path: str | os.PathLike) -> dict[str, PasswordHash]:
    """``{name: hash}`` of an accounts file, in file order; a clear error for a bad line or a name
    given twice. ``FileNotFoundError`` when there is no such file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no accounts file {path}: create it with `python -m app.users add NAME --file {path}`")
    accounts: dict[str, PasswordHash] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        name, entry = parse_line(line, f"{path} line {number}")
        if name in accounts:
            raise ValueError(f"{path} line {number}: account {name!r} is listed twice")
        accounts[name] = entry
    return accounts


def write_accounts(path: str | os.PathLike, accounts: dict[str, PasswordHash]) -> Path:
    """Write ``accounts`` to ``path`` atomically, readable by its owner only (mode 0600)."""
    text = _HEADER + "".join(entry.line(name) + "\n" for name, entry in accounts.items())

    def write(tmp: Path) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o600)  # whatever the umask

    return atomic_write(path, write)


def _accounts_without(path: Path, name: str) -> dict[str, PasswordHash]:
    """The accounts of ``path`` (none when it does not exist yet), which must not hold ``name``."""
    check_name(name)
    accounts = read_accounts(path) if path.exists() else {}
    if name in accounts:
        raise ValueError(f"account {name!r} already exists in {path}: remove it first to set a new password")
    return accounts


def add_account(path: str | os.PathLike, name: str, password: str) -> None:
    """Add ``name`` with ``password`` to the file at ``path`` (created when missing)."""
    accounts = _accounts_without(Path(path), name)
    accounts[name] = hash_password(check_password(password))
    write_accounts(path, accounts)


def remove_account(path: str | os.PathLike, name: str) -> None:
    """Remove ``name`` from the file at ``path``."""
    accounts = read_accounts(path)
    if name not in accounts:
        known = ", ".join(accounts) or "none"
        raise ValueError(f"no account {name!r} in {path} (accounts: {known})")
    del accounts[name]
    write_accounts(path, accounts)


def _read_password(from_stdin: bool) -> str:
    """The new password: one line of stdin, or typed twice at a hidden prompt."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != first:
        raise ValueError("the two passwords differ; nothing was changed")
    return first


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m app.users",
                                     description="Accounts for `python -m app --auth-file FILE`.")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="add an account (asks for its password twice)")
    add.add_argument("name", help="account name: no spaces or ':'")
    add.add_argument("--password-stdin", action="store_true", help="read the password from one line of stdin")
    remove = commands.add_parser("remove", help="remove an account")
    remove.add_argument("name")
    listing = commands.add_parser("list", help="list the account names")
    for sub in (add, remove, listing):
        sub.add_argument("--file", type=Path, default=DEFAULT_FILE, help="accounts file (default: users.txt)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "add":
            _accounts_without(args.file, args.name)  # before asking for a password
            add_account(args.file, args.name, _read_password(args.password_stdin))
            print(f"account {args.name!r} added to {args.file}")
        elif args.command == "remove":
            remove_account(args.file, args.name)
            print(f"account {args.name!r} removed from {args.file}")
        else:
            for name in read_accounts(args.file):
                print(name)
    except (ValueError, OSError) as exc:  # OSError: FileNotFoundError from read_accounts, a folder not writable
        print(f"python -m app.users: error: {exc}", file=sys.stderr)
        return 1
    except (EOFError, KeyboardInterrupt):
        print("\npython -m app.users: cancelled; nothing was changed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
