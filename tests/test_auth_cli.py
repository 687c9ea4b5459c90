"""``jobtrio users`` and ``jobtrio login`` as an operator runs them (real processes)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import trio
from hypercorn.trio import serve as hypercorn_serve

from jobtrio.api.app import create_app
from jobtrio.server import hypercorn_config
from jobtrio.users import Role, Users
from tests.servers import free_port
from tests.test_api import make_node

JOBTRIO = [str(Path(sys.executable).parent / "jobtrio")]


def run(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*JOBTRIO, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_users_add_list_passwd_remove(tmp_path: Path) -> None:
    path = str(tmp_path / "users.json")
    added = run(
        "users", "add", "alice", "--role", "admin", "--file", path, stdin="a-long-password\n"
    )
    assert added.returncode == 0, added.stderr
    assert "a-long-password" not in Path(path).read_text()
    listed = run("users", "list", "--json", env={"USERS_FILE": path})
    assert json.loads(listed.stdout)["users"][0] | {"updated_at": None} == {
        "name": "alice",
        "role": "admin",
        "updated_at": None,
    }
    stamp = Users.load(path).get("alice").stamp  # type: ignore[union-attr]
    changed = run("users", "passwd", "alice", "--file", path, stdin="another-password\n")
    assert changed.returncode == 0 and "revoked" in changed.stdout
    user = Users.load(path).get("alice")
    assert user is not None and user.stamp != stamp
    assert Users.load(path).verify("alice", "another-password") is not None
    again = run(
        "users", "add", "alice", "--role", "user", "--file", path, stdin="x-long-password\n"
    )
    assert again.returncode == 1 and "exists already" in again.stderr
    removed = run("users", "remove", "alice", "--file", path)
    assert removed.returncode == 0
    assert len(Users.load(path)) == 0


def test_users_refuse_bad_input_in_one_line(tmp_path: Path) -> None:
    path = str(tmp_path / "users.json")
    for args, stdin, code, words in [
        (("users", "add", "bob", "--role", "user", "--file", path), "short\n", 1, "at least 8"),
        (
            ("users", "add", "b\x1bob", "--role", "user", "--file", path),
            "long-enough\n",
            1,
            "not valid",
        ),
        (("users", "add", "bob", "--role", "root", "--file", path), "long-enough\n", 2, "root"),
        (
            (
                "users",
                "list",
            ),
            "",
            2,
            "USERS_FILE",
        ),
        (("users", "remove", "nobody", "--file", path), "", 1, "does not exist"),
    ]:
        result = run(*args, stdin=stdin, env={"USERS_FILE": ""})
        assert result.returncode == code, (args, result.stderr)
        assert words in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert "\x1b" not in result.stderr


async def test_login_prints_a_token_the_other_commands_take(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    users = Users.open_or_create(path)
    users.add("carol", Role.USER, "carols-password")
    users.save()
    node = make_node(auth_enabled=True, jwt_secret="j" * 32, users_file=str(path))
    port = free_port()
    config = hypercorn_config(node.settings, "127.0.0.1", port)
    config.graceful_timeout = 0.1
    url = f"http://127.0.0.1:{port}"
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await nursery.start(functools.partial(hypercorn_serve, create_app(node), config))
        logged = await trio.to_thread.run_sync(
            functools.partial(run, "login", "carol", "--url", url, stdin="carols-password\n")
        )
        assert logged.returncode == 0, logged.stderr
        token = logged.stdout.strip()
        denied = await trio.to_thread.run_sync(
            functools.partial(run, "jobs", "list", "--url", url, env={"JOBTRIO_TOKEN": ""})
        )
        assert denied.returncode == 1 and "401" in denied.stderr
        listed = await trio.to_thread.run_sync(
            functools.partial(run, "jobs", "list", "--url", url, "--token", token)
        )
        assert listed.returncode == 0, listed.stderr
        wrong = await trio.to_thread.run_sync(
            functools.partial(run, "login", "carol", "--url", url, stdin="not-her-password\n")
        )
        assert wrong.returncode == 1 and "wrong user name or password" in wrong.stderr
        node.request_stop()
        await node.stopped.wait()
        nursery.cancel_scope.cancel()
