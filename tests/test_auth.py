"""AUTH_ENABLED=true: logins, tokens, revocation, throttling and the role x route matrix.

The matrix below is the documented one (docs/security.md). The test walks
``app.url_map`` (websocket routes included), so a route added without a row
here fails, and every row is tried with each role and with every kind of
bad credential: none, expired, a bad signature, ``alg: none``, another
algorithm, a wrong issuer or audience, a revoked user.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import argon2
import jwt
import pytest
import trio
from quart_trio import QuartTrio
from quart_trio.testing.connections import WebsocketResponseError

from jobtrio.actors.node import Node
from jobtrio.api.app import create_app
from jobtrio.api.login import FREE_FAILURES_PER_ADDRESS, FREE_FAILURES_PER_USER
from jobtrio.config import ConfigError
from jobtrio.tokens import AUDIENCE, ISSUER
from jobtrio.users import Role, Users
from tests.test_api import make_node

SECRET = "s" * 64
PASSWORDS = {"ada": "ada-password", "uma": "uma-password", "wes": "wes-password"}
ROLES = {"ada": Role.ADMIN, "uma": Role.USER, "wes": Role.WORKER}
#: Cheap argon2 for tests: the parameters travel in the hash, so nodes verify with them.
CHEAP = argon2.PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)

A, U, W = "admin", "user", "worker"
ALL = {A, U, W}
PUBLIC = None
#: (method, rule) -> roles allowed (None: public). The documented matrix.
MATRIX: dict[tuple[str, str], set[str] | None] = {
    ("POST", "/auth/login"): PUBLIC,
    ("GET", "/health"): PUBLIC,
    ("GET", "/ready"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/"): PUBLIC,
    ("GET", "/dashboard/<name>"): PUBLIC,
    ("GET", "/api/v1/jobs"): ALL,
    ("GET", "/api/v1/jobs/<job_id>"): ALL,
    ("POST", "/api/v1/jobs"): {A, U},
    ("POST", "/api/v1/jobs/batch"): {A, U},
    ("DELETE", "/api/v1/jobs/<job_id>"): {A, U},
    ("DELETE", "/api/v1/jobs/<job_id>?purge=true"): {A},
    ("POST", "/api/v1/jobs/<job_id>/retry"): {A, U},
    ("GET", "/api/v1/schedules"): {A, U},
    ("GET", "/api/v1/schedules/<name>"): {A, U},
    ("POST", "/api/v1/schedules"): {A},
    ("DELETE", "/api/v1/schedules/<name>"): {A},
    ("GET", "/api/v1/queues"): {A, U, W},
    ("GET", "/api/v1/queues/<name>"): {A, U, W},
    ("POST", "/api/v1/queues/<name>/pause"): {A},
    ("POST", "/api/v1/queues/<name>/resume"): {A},
    ("PUT", "/api/v1/queues/<name>/rate_limit"): {A},
    ("DELETE", "/api/v1/queues/<name>/rate_limit"): {A},
    ("POST", "/api/v1/workflows"): {A, U},
    ("GET", "/api/v1/workflows/<workflow_id>"): ALL,
    ("DELETE", "/api/v1/workflows/<workflow_id>"): {A, U},
    ("GET", "/api/v1/stats"): ALL,
    ("GET", "/api/v1/leader"): ALL,
    ("GET", "/api/v1/election"): {A, U},
    ("GET", "/api/v1/elections"): {A, U},
    ("GET", "/api/v1/election/algorithms"): {A, U},
    ("GET", "/api/v1/election/algorithms/<algorithm>"): {A, U},
    ("GET", "/api/v1/nodes"): {A},
    ("GET", "/api/v1/workers"): {A},
    ("GET", "/api/v1/cluster"): {A},
    ("WEBSOCKET", "/api/v1/events"): ALL,
}
#: Rows a ``user`` may use on its own jobs only ("own" in the documented matrix): another
#: user's job answers 404 (tests/test_ownership.py covers the list and the event stream).
OWN_ONLY = [
    ("GET", "/api/v1/jobs/<job_id>"),
    ("DELETE", "/api/v1/jobs/<job_id>"),
    ("POST", "/api/v1/jobs/<job_id>/retry"),
    ("GET", "/api/v1/workflows/<workflow_id>"),
    ("DELETE", "/api/v1/workflows/<workflow_id>"),
]

GROUP = {"group": [{"type": "noop"}, {"type": "noop"}]}


def make_users(path: Path) -> Users:
    users = Users.open_or_create(path, CHEAP)
    for name, password in PASSWORDS.items():
        users.add(name, ROLES[name], password)
    users.save()
    return users


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.json"
    make_users(path)
    return path


@pytest.fixture
async def secure_node(users_file: Path) -> AsyncIterator[Node]:
    node = make_node(auth_enabled=True, jwt_secret=SECRET, users_file=str(users_file))
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        yield node
        node.request_stop()


@pytest.fixture
def secure_app(secure_node: Node) -> QuartTrio:
    return create_app(secure_node)


async def login(app: QuartTrio, name: str, password: str | None = None) -> Any:
    response = await app.test_client().post(
        "/auth/login", json={"username": name, "password": password or PASSWORDS[name]}
    )
    return response


async def token_for(app: QuartTrio, name: str) -> str:
    response = await login(app, name)
    assert response.status_code == 200, await response.get_json()
    return (await response.get_json())["token"]


def forged(**changes: Any) -> str:
    """A token as an attacker (or a misconfigured issuer) would make it, for user ada."""
    users = json.loads(Path(changes.pop("users_file")).read_text())["users"]
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "ada",
        "role": "admin",
        "stp": users["ada"]["stamp"],
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    key = changes.pop("key", SECRET)
    algorithm = changes.pop("algorithm", "HS256")
    claims.update(changes)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm=algorithm)


def bad_tokens(users_file: Path) -> dict[str, str]:
    f = str(users_file)
    return {
        "garbage": "not-a-jwt",
        "expired": forged(users_file=f, exp=int(time.time()) - 3600),
        "not yet valid": forged(users_file=f, nbf=int(time.time()) + 3600),
        "bad signature": forged(users_file=f, key="another-secret-of-enough-length!!"),
        "alg none": forged(users_file=f, key=None, algorithm="none"),
        "HS512": forged(users_file=f, algorithm="HS512"),
        "wrong issuer": forged(users_file=f, iss="someone-else"),
        "wrong audience": forged(users_file=f, aud="another-api"),
        "no stamp": forged(users_file=f, stp=None),
        "wrong stamp": forged(users_file=f, stp="0" * 32),
        "unknown user": forged(users_file=f, sub="mallory"),
        "peer token off its route": forged(users_file=f, sub="node:x", peer=True, stp=None),
    }


def test_the_good_forgery_is_accepted_so_the_bad_ones_test_one_thing(
    users_file: Path,
) -> None:
    from jobtrio.tokens import Tokens

    good = forged(users_file=str(users_file))
    claims = Tokens(SECRET, 3600).verify(good, time.time())
    assert claims.subject == "ada" and claims.role == Role.ADMIN


# --------------------------------------------------------------------------
# the matrix


async def concrete(app: QuartTrio, node: Node, rule: str) -> tuple[str, dict[str, Any]]:
    """A path for ``rule`` with real ids, and the body a request needs."""
    job = await node.submit({"type": "noop"})
    path = rule.replace("<job_id>", job.id)
    if "<workflow_id>" in rule:
        workflow = await node.submit_workflow(GROUP)
        path = path.replace("<workflow_id>", workflow["id"])
    path = path.replace("<name>", "app.js" if rule.startswith("/dashboard") else "heartbeat")
    path = path.replace("<algorithm>", "bully")
    bodies = {
        "/api/v1/jobs": {"type": "noop"},
        "/api/v1/jobs/batch": {"jobs": [{"type": "noop"}]},
        "/api/v1/schedules": {"name": "heartbeat", "every": "30s", "job": {"type": "noop"}},
        "/auth/login": {"username": "ada", "password": PASSWORDS["ada"]},
        "/api/v1/queues/<name>/rate_limit": {"jobs": 1, "per": 1},
        "/api/v1/workflows": GROUP,
    }
    return path, {"json": bodies[rule]} if rule in bodies else {}


async def call(
    app: QuartTrio, method: str, path: str, token: str | None, kwargs: dict[str, Any]
) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if method == "WEBSOCKET":
        try:
            async with app.test_client().websocket(path, headers=headers) as ws:
                await ws.receive()
                return 101
        except BaseExceptionGroup as group:
            [error] = group.exceptions
            assert isinstance(error, WebsocketResponseError)
            return error.response.status_code
        except WebsocketResponseError as error:
            return error.response.status_code
    response = await getattr(app.test_client(), method.lower())(path, headers=headers, **kwargs)
    return response.status_code


async def test_the_matrix_names_every_route(secure_app: QuartTrio) -> None:
    routes = set()
    for rule in secure_app.url_map.iter_rules():
        if rule.websocket:
            routes.add(("WEBSOCKET", rule.rule))
            continue
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                routes.add((method, rule.rule))
    listed = {(m, r.split("?")[0]) for m, r in MATRIX}
    assert routes == listed


async def test_each_role_may_use_exactly_its_routes(
    secure_app: QuartTrio, secure_node: Node
) -> None:
    tokens = {ROLES[name].value: await token_for(secure_app, name) for name in PASSWORDS}
    for (method, rule), allowed in MATRIX.items():
        for role, token in [*tokens.items(), ("nobody", None)]:
            path, kwargs = await concrete(secure_app, secure_node, rule)
            status = await call(secure_app, method, path, token, kwargs)
            if allowed is None:
                assert status not in (401, 403), (method, rule, role, status)
            elif role == "nobody":
                assert status == 401, (method, rule, role, status)
            elif role in allowed:
                assert status not in (401, 403), (method, rule, role, status)
            else:
                assert status == 403, (method, rule, role, status)


async def test_a_user_meets_another_users_job_as_an_unknown_id(
    secure_app: QuartTrio, secure_node: Node
) -> None:
    token = await token_for(secure_app, "uma")
    for method, rule in OWN_ONLY:
        assert U in (MATRIX[(method, rule)] or ())
        for owner, expect_unknown in (("ada", True), ("uma", False)):
            if "<workflow_id>" in rule:
                workflow = await secure_node.submit_workflow(GROUP, owner=owner)
                path = rule.replace("<workflow_id>", workflow["id"])
            else:
                job = await secure_node.submit({"type": "noop"}, owner=owner)
                path = rule.replace("<job_id>", job.id)
            status = await call(secure_app, method, path, token, {})
            assert (status == 404) is expect_unknown, (method, rule, owner, status)


async def test_every_bad_credential_is_refused_on_every_protected_route(
    secure_app: QuartTrio, secure_node: Node, users_file: Path
) -> None:
    bad = bad_tokens(users_file)
    for (method, rule), allowed in MATRIX.items():
        if allowed is None:
            continue
        path, kwargs = await concrete(secure_app, secure_node, rule)
        for what, token in bad.items():
            if what == "peer token off its route" and rule == "/api/v1/workers":
                continue  # its own route (test_the_peer_token_opens_the_workers_route_only)
            status = await call(secure_app, method, path, token, kwargs)
            expected = 403 if what == "peer token off its route" else 401
            assert status == expected, (method, rule, what, status)


async def test_a_bad_token_says_why(secure_app: QuartTrio, users_file: Path) -> None:
    bad = bad_tokens(users_file)
    client = secure_app.test_client()
    for what, words in [
        ("expired", "expired"),
        ("alg none", "HS256"),
        ("bad signature", "signature"),
        ("wrong issuer", "issuer"),
        ("wrong audience", "audience"),
        ("wrong stamp", "revoked"),
    ]:
        response = await client.get(
            "/api/v1/jobs", headers={"Authorization": f"Bearer {bad[what]}"}
        )
        error = (await response.get_json())["error"]
        assert response.status_code == 401 and error["code"] == "unauthorized"
        assert words in error["message"], (what, error)
        assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_the_event_stream_takes_the_token_from_the_query_but_http_routes_do_not(
    secure_app: QuartTrio,
) -> None:
    token = await token_for(secure_app, "wes")
    async with secure_app.test_client().websocket(f"/api/v1/events?token={token}") as ws:
        ready = json.loads(await ws.receive())
        assert ready["kind"] == "stream.ready"
    response = await secure_app.test_client().get(f"/api/v1/jobs?token={token}")
    assert response.status_code in (400, 401)  # a token in a URL ends up in logs


async def test_the_peer_token_opens_the_workers_route_only(
    secure_app: QuartTrio, secure_node: Node
) -> None:
    from jobtrio.tokens import Tokens

    token = Tokens(SECRET, 3600).issue_peer("node-2", time.time())
    client = secure_app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/v1/workers?scope=local", headers=headers)).status_code == 200
    assert (await client.get("/api/v1/jobs", headers=headers)).status_code == 403


# --------------------------------------------------------------------------
# login


async def test_login_returns_a_token_its_role_and_expiry(secure_app: QuartTrio) -> None:
    for name, role in ROLES.items():
        response = await login(secure_app, name)
        assert response.status_code == 200
        body = await response.get_json()
        assert set(body) == {"token", "role", "expires_at"} and body["role"] == role
        claims = jwt.decode(body["token"], options={"verify_signature": False})
        assert claims["sub"] == name and claims["exp"] > time.time() + 3000
        assert jwt.get_unverified_header(body["token"])["alg"] == "HS256"


async def test_unknown_user_and_wrong_password_answer_alike(secure_app: QuartTrio) -> None:
    wrong = await login(secure_app, "ada", "not-her-password")
    unknown = await login(secure_app, "nobody-here", "whatever-password")
    assert wrong.status_code == unknown.status_code == 401
    assert await wrong.get_json() == await unknown.get_json()
    assert (await wrong.get_json())["error"]["code"] == "invalid_credentials"


@pytest.mark.parametrize(
    "body",
    [{}, {"username": "ada"}, {"username": 1, "password": "x"}, {"user": "a", "password": "b"}],
)
async def test_a_malformed_login_is_422(secure_app: QuartTrio, body: dict[str, Any]) -> None:
    response = await secure_app.test_client().post("/auth/login", json=body)
    assert response.status_code == 422


async def test_repeated_failures_for_one_user_are_slowed_down(secure_app: QuartTrio) -> None:
    for _ in range(FREE_FAILURES_PER_USER):
        assert (await login(secure_app, "uma", "wrong-password")).status_code == 401
    response = await login(secure_app, "uma", "wrong-password")
    assert response.status_code == 401  # this failure starts the delay
    response = await login(secure_app, "uma")  # even the right password waits
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert (await response.get_json())["error"]["code"] == "too_many_attempts"
    # another user is not held up by uma's failures
    assert (await login(secure_app, "ada")).status_code == 200


async def test_repeated_failures_from_one_address_are_slowed_down(secure_app: QuartTrio) -> None:
    for i in range(FREE_FAILURES_PER_ADDRESS + 1):
        assert (await login(secure_app, f"guess{i}", "wrong-password")).status_code == 401
    response = await login(secure_app, "ada")
    assert response.status_code == 429 and "Retry-After" in response.headers


def test_the_throttle_doubles_its_delay_and_forgets_after_the_window() -> None:
    from jobtrio.throttle import Throttle

    t = Throttle(free=2, window=100, base_delay=1, max_delay=8, max_keys=3)
    for now in (0, 0, 0):
        t.failed("k", now)
    assert t.retry_after("k", 0) == 1
    t.failed("k", 1)
    assert t.retry_after("k", 1) == 2
    for _ in range(10):
        t.failed("k", 3)
    assert t.retry_after("k", 3) == 8  # capped
    t.failed("k", 200)  # past the window: counting starts again
    assert t.retry_after("k", 200) is None
    for key in "abcd":
        t.failed(key, 0)
    assert len(t) == 3  # bounded


# --------------------------------------------------------------------------
# revocation


async def test_changing_a_password_or_removing_a_user_revokes_their_tokens(
    secure_app: QuartTrio, users_file: Path
) -> None:
    client = secure_app.test_client()
    uma, wes = await token_for(secure_app, "uma"), await token_for(secure_app, "wes")
    for token in (uma, wes):
        response = await client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
    users = Users.load(users_file, CHEAP)
    users.set_password("uma", "a-new-password")
    users.remove("wes")
    users.save()
    for token in (uma, wes):
        response = await client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401
        assert "revoked" in (await response.get_json())["error"]["message"]
    assert (await login(secure_app, "uma", "a-new-password")).status_code == 200
    assert (await login(secure_app, "wes")).status_code == 401


async def test_login_is_404_with_auth_off() -> None:
    node = make_node()
    response = (
        await create_app(node)
        .test_client()
        .post("/auth/login", json={"username": "a", "password": "b"})
    )
    assert response.status_code == 404
    assert (await response.get_json())["error"]["code"] == "auth_disabled"


# --------------------------------------------------------------------------
# start-up


def test_an_app_with_auth_on_and_no_users_file_is_refused(tmp_path: Path) -> None:
    node = make_node(
        auth_enabled=True, jwt_secret=SECRET, users_file=str(tmp_path / "missing.json")
    )
    with pytest.raises(ConfigError, match="USERS_FILE=.*missing.json.*does not exist"):
        create_app(node)


def test_users_file_is_private_and_holds_no_password(users_file: Path) -> None:
    assert users_file.stat().st_mode & 0o077 == 0
    text = users_file.read_text()
    for password in PASSWORDS.values():
        assert password not in text
    assert "$argon2id$" in text
