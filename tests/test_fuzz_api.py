"""The API fuzzed by schemathesis against its own ``/openapi.json``.

A node is served over real HTTP (memory backends) and ``st run`` (a separate
process) sends it what the document describes and what it does not:
examples, boundary values, random data in every phase (examples, coverage,
fuzzing, stateful). The checks are that nothing answers 5xx, that every
status code, content type, header and body is the one the document
declares, and, with auth on, that no operation answers without credentials.

The number of examples per operation is bounded so the suite stays quick
(``FUZZ_EXAMPLES``, default 5); a longer run by hand:

    FUZZ_EXAMPLES=100 pytest tests/test_fuzz_api.py
"""

from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path

import argon2
import pytest
import trio
from hypercorn.trio import serve as hypercorn_serve

from jobtrio.api.app import create_app
from jobtrio.server import hypercorn_config
from jobtrio.users import Role, Users
from tests.servers import free_port
from tests.test_api import make_node

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "5"))
SEED = int(os.environ.get("FUZZ_SEED", "20261206"))
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "unsupported_method",
]
ST = str(Path(sys.executable).parent / "st")


async def fuzz(auth: bool, tmp_path: Path) -> tuple[int, str]:
    changes: dict[str, object] = {}
    if auth:
        users = Users.open_or_create(
            tmp_path / "users.json", argon2.PasswordHasher(time_cost=1, memory_cost=64)
        )
        users.add("fuzzer", Role.ADMIN, "fuzzer-password")
        users.save()
        changes.update(
            auth_enabled=True, jwt_secret="f" * 32, users_file=str(tmp_path / "users.json")
        )
    node = make_node(**changes)
    app = create_app(node)
    port = free_port()
    config = hypercorn_config(node.settings, "127.0.0.1", port)
    config.graceful_timeout = 0.1
    url = f"http://127.0.0.1:{port}"
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await nursery.start(functools.partial(hypercorn_serve, app, config))
        headers: list[str] = []
        checks = list(CHECKS)
        if auth:
            reply = await app.test_client().post(
                "/auth/login", json={"username": "fuzzer", "password": "fuzzer-password"}
            )
            token = (await reply.get_json())["token"]
            headers = ["-H", f"Authorization: Bearer {token}"]
            checks.append("ignored_auth")  # each operation refuses a missing or bad token
        result = await trio.run_process(
            [
                ST,
                "run",
                f"{url}/openapi.json",
                "--max-examples",
                str(EXAMPLES),
                "--seed",
                str(SEED),
                "--checks",
                ",".join(checks),
                "--request-timeout",
                "30",
                "--no-color",
                *headers,
            ],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=tmp_path,
        )
        node.request_stop()
        await node.stopped.wait()
        nursery.cancel_scope.cancel()
    output = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    return result.returncode, output


def cases(output: str) -> int:
    found = re.search(r"(\d+) generated", output)
    assert found, output[-3000:]
    return int(found.group(1))


@pytest.mark.parametrize("auth", [False, True], ids=["auth-off", "auth-on"])
async def test_no_5xx_and_every_response_as_documented(auth: bool, tmp_path: Path) -> None:
    code, output = await fuzz(auth, tmp_path)
    print(f"schemathesis ({'auth on' if auth else 'auth off'}): {cases(output)} cases")
    assert code == 0, output[-6000:]
    assert cases(output) > 100
