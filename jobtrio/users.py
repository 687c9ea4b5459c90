"""Who may log in, and as what: the ``USERS_FILE``.

A JSON file, written by ``jobtrio users`` and read by every node::

    {"version": 1, "users": {"alice": {"role": "admin", "hash": "$argon2id$...",
                                        "stamp": "9f2c...", "updated_at": 1765000000.0}}}

There are no built-in users or passwords. Passwords are stored as argon2id
hashes (argon2-cffi, RFC 9106's parameters). Each user has a random
``stamp``, copied into every token issued to them: changing the password or
removing the user changes (or drops) the stamp, and every token carrying the
old one is refused from then on (nodes re-read the file when it changes).

The file is replaced atomically (written aside, then renamed) with mode
0600, so a node never reads half a file and other local users cannot read
the hashes.
"""

from __future__ import annotations

import enum
import json
import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .text import clip

#: User names: what a terminal, a log line and a JWT ``sub`` can carry safely.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
#: Longest password accepted (argon2 would take any length; a bound keeps hashing cheap).
MAX_PASSWORD_BYTES = 1024
MIN_PASSWORD_LENGTH = 8
FILE_VERSION = 1


class Role(enum.StrEnum):
    """The roles; which routes each may use is the matrix in docs/security.md."""

    ADMIN = "admin"
    USER = "user"
    WORKER = "worker"


class UsersFileError(ValueError):
    """The users file cannot be used; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role
    hash: str
    stamp: str
    updated_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": str(self.role),
            "hash": self.hash,
            "stamp": self.stamp,
            "updated_at": self.updated_at,
        }


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise UsersFileError(
            f"user name {clip(name)} is not valid: 1 to 64 letters, digits or _.@-"
        )
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsersFileError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise UsersFileError(f"the password must be at most {MAX_PASSWORD_BYTES} bytes")
    return password


def parse_role(text: str) -> Role:
    try:
        return Role(text.strip().lower())
    except ValueError:
        raise UsersFileError(
            f"role {clip(text)} is not one of {', '.join(r.value for r in Role)}"
        ) from None


class Users:
    """The users of one file, in memory; ``save`` writes them back."""

    def __init__(self, path: str | Path, hasher: argon2.PasswordHasher | None = None) -> None:
        self.path = Path(path)
        self.hasher = hasher or argon2.PasswordHasher()
        self._users: dict[str, User] = {}
        #: A hash of a random password, verified against when the user does not exist,
        #: so an unknown name takes as long as a wrong password (made on first use).
        self._decoy: str | None = None
        self._mtime: int | None = None

    # -- reading and writing -------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, hasher: argon2.PasswordHasher | None = None) -> Users:
        users = cls(path, hasher)
        users.reload()
        return users

    @classmethod
    def open_or_create(cls, path: str | Path, hasher: argon2.PasswordHasher | None = None) -> Users:
        users = cls(path, hasher)
        if users.path.exists():
            users.reload()
        return users

    def reload(self) -> None:
        try:
            stat = self.path.stat()
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsersFileError(
                f"{self.path} does not exist: create it with "
                f"`jobtrio users add NAME --role admin --file {self.path}`"
            ) from None
        except OSError as exc:
            raise UsersFileError(f"{self.path} cannot be read: {exc.strerror}") from None
        self._users = _parse(self.path, text)
        self._mtime = stat.st_mtime_ns

    def reload_if_changed(self) -> None:
        """Re-read the file if it changed since (a password changed on a running node)."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            self._users = {}  # the file is gone: nobody may log in
            self._mtime = None
            return
        if mtime != self._mtime:
            self.reload()

    def save(self) -> None:
        data = {
            "version": FILE_VERSION,
            "users": {name: user.to_dict() for name, user in sorted(self._users.items())},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".users-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._mtime = self.path.stat().st_mtime_ns

    # -- the users -----------------------------------------------------------------------
    def __iter__(self) -> Iterator[User]:
        return iter(sorted(self._users.values(), key=lambda u: u.name))

    def __len__(self) -> int:
        return len(self._users)

    def get(self, name: str) -> User | None:
        return self._users.get(name)

    def add(self, name: str, role: Role, password: str, now: float | None = None) -> User:
        check_name(name)
        if name in self._users:
            raise UsersFileError(
                f"user {name!r} exists already; change the password with `jobtrio users passwd`"
            )
        return self._put(name, role, password, now)

    def set_password(self, name: str, password: str, now: float | None = None) -> User:
        user = self._existing(name)
        return self._put(name, user.role, password, now)

    def set_role(self, name: str, role: Role, now: float | None = None) -> User:
        user = self._existing(name)
        new = User(name, role, user.hash, secrets.token_hex(16), now or time.time())
        self._users[name] = new
        return new

    def remove(self, name: str) -> None:
        self._existing(name)
        del self._users[name]

    def verify(self, name: str, password: str) -> User | None:
        """The user if ``password`` is theirs, else None; as slow for an unknown name.

        Blocking (argon2 takes tens of milliseconds by design): run it in a thread.
        """
        if self._decoy is None:
            self._decoy = self.hasher.hash(secrets.token_hex(16))
        user = self._users.get(name)
        candidate = password if len(password.encode()) <= MAX_PASSWORD_BYTES else ""
        try:
            self.hasher.verify(user.hash if user else self._decoy, candidate)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return user

    def _existing(self, name: str) -> User:
        user = self._users.get(name)
        if user is None:
            raise UsersFileError(f"no user {clip(name)} in {self.path}")
        return user

    def _put(self, name: str, role: Role, password: str, now: float | None) -> User:
        check_password(password)
        user = User(
            name=name,
            role=role,
            hash=self.hasher.hash(password),
            stamp=secrets.token_hex(16),  # a new stamp: tokens issued before are refused
            updated_at=now or time.time(),
        )
        self._users[name] = user
        return user


def _parse(path: Path, text: str) -> dict[str, User]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsersFileError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("users"), dict):
        raise UsersFileError(f'{path} is not a users file: expected {{"users": {{...}}}}')
    if data.get("version", FILE_VERSION) != FILE_VERSION:
        raise UsersFileError(f"{path} has version {data.get('version')!r}; this jobtrio reads 1")
    users: dict[str, User] = {}
    for name, entry in data["users"].items():
        try:
            check_name(name)
            if not isinstance(entry, dict):
                raise UsersFileError("not an object")
            hashed, stamp = entry.get("hash"), entry.get("stamp")
            if not isinstance(hashed, str) or not hashed.startswith("$argon2"):
                raise UsersFileError("hash is not an argon2 hash")
            if not isinstance(stamp, str) or len(stamp) < 16:
                raise UsersFileError("stamp is missing")
            users[name] = User(
                name=name,
                role=parse_role(str(entry.get("role", ""))),
                hash=hashed,
                stamp=stamp,
                updated_at=float(entry.get("updated_at", 0.0)),
            )
        except (UsersFileError, TypeError, ValueError) as exc:
            raise UsersFileError(f"{path}: user {clip(name)}: {exc}") from None
    return users
