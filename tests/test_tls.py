"""TLS on every link, with a throwaway CA made in the test (trustme).

The API and the event stream over HTTPS/WSS, the peer transport over WSS
(with and without mutual TLS), a 3-node cluster electing over WSS, /metrics
over HTTPS with its credentials, and Redis over ``rediss://``. Each link is
also tried in plaintext and with a certificate from another CA: both refused.
"""

from __future__ import annotations

import base64
import functools
import json
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trustme
from hypercorn.trio import serve as hypercorn_serve
from trio_websocket import HandshakeError, open_websocket_url

from jobtrio.actors.node import Node
from jobtrio.api.app import create_app
from jobtrio.api.metrics_app import create_metrics_app
from jobtrio.cluster.transport import WebsocketTransport
from jobtrio.config import ConfigError, Settings
from jobtrio.server import hypercorn_config, serve
from jobtrio.tls import peer_client_context, peer_http_verify, peer_server_context
from jobtrio.users import Role, Users
from tests.servers import free_port
from tests.test_api import make_node
from tests.waiting import wait_until


class Pki:
    """A CA, a certificate for 127.0.0.1/localhost signed by it, and a stranger CA's."""

    def __init__(self, root: Path) -> None:
        self.ca = trustme.CA()
        self.stranger = trustme.CA()
        self.ca_file = root / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.stranger_ca_file = root / "stranger-ca.pem"
        self.stranger.cert_pem.write_to_path(str(self.stranger_ca_file))
        self.cert_file, self.key_file = self._issue(self.ca, root, "node")
        self.stranger_cert, self.stranger_key = self._issue(self.stranger, root, "stranger")

    @staticmethod
    def _issue(ca: trustme.CA, root: Path, name: str) -> tuple[Path, Path]:
        cert = ca.issue_cert("127.0.0.1", "localhost")
        cert_file, key_file = root / f"{name}.pem", root / f"{name}.key"
        cert.private_key_pem.write_to_path(str(key_file))
        with cert_file.open("wb") as f:
            for blob in cert.cert_chain_pems:
                f.write(blob.bytes())
        return cert_file, key_file

    def settings(self, stranger: bool = False, **changes: Any) -> dict[str, Any]:
        return {
            "tls_enabled": True,
            "tls_cert_file": str(self.stranger_cert if stranger else self.cert_file),
            "tls_key_file": str(self.stranger_key if stranger else self.key_file),
            "tls_ca_file": str(self.stranger_ca_file if stranger else self.ca_file),
            **changes,
        }

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def https_node(pki: Pki) -> AsyncIterator[tuple[Node, int]]:
    node = make_node(**pki.settings())
    port = free_port()
    config = hypercorn_config(node.settings, "127.0.0.1", port)
    config.graceful_timeout = 0.1
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await nursery.start(functools.partial(hypercorn_serve, create_app(node), config))
        yield node, port
        node.request_stop()
        await node.stopped.wait()
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------
# the API and the event stream


def causes(exc: BaseException | None) -> Iterator[BaseException]:
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


async def test_the_api_answers_over_https_to_a_client_that_trusts_the_ca(
    pki: Pki, https_node: tuple[Node, int]
) -> None:
    _, port = https_node
    async with httpx.AsyncClient(verify=pki.client_context()) as client:
        response = await client.get(f"https://127.0.0.1:{port}/health")
        assert response.status_code == 200
        submitted = await client.post(
            f"https://127.0.0.1:{port}/api/v1/jobs", json={"type": "noop"}
        )
        assert submitted.status_code == 201


async def test_plaintext_and_untrusted_clients_are_refused(
    pki: Pki, https_node: tuple[Node, int]
) -> None:
    _, port = https_node
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.HTTPError):
            await client.get(f"http://127.0.0.1:{port}/health")
    stranger = ssl.create_default_context(cafile=str(pki.stranger_ca_file))
    async with httpx.AsyncClient(verify=stranger) as client:
        with pytest.raises(httpx.ConnectError) as info:
            await client.get(f"https://127.0.0.1:{port}/health")
    assert any(isinstance(e, ssl.SSLCertVerificationError) for e in causes(info.value))


async def test_the_event_stream_over_wss(pki: Pki, https_node: tuple[Node, int]) -> None:
    node, port = https_node
    url = f"wss://127.0.0.1:{port}/api/v1/events"
    async with open_websocket_url(url, ssl_context=pki.client_context()) as ws:
        ready = json.loads(await ws.get_message())
        assert ready["kind"] == "stream.ready"
        job = await node.submit({"type": "noop"})
        with trio.fail_after(10):
            while True:
                event = json.loads(await ws.get_message())
                if event.get("job_id") == job.id and event["kind"] == "job.completed":
                    break
    stranger = ssl.create_default_context(cafile=str(pki.stranger_ca_file))
    with pytest.raises((ssl.SSLError, OSError, trio.BrokenResourceError, HandshakeError)):
        async with open_websocket_url(
            url, ssl_context=stranger, connect_timeout=5, disconnect_timeout=1
        ):
            pytest.fail("a client that does not trust the certificate connected")


# --------------------------------------------------------------------------
# peers


async def start_peer(
    nursery: trio.Nursery, node_id: str, settings: Settings | None, secret: str = "s3cret"
) -> WebsocketTransport:
    transport = WebsocketTransport(
        node_id,
        "",
        secret,
        host="127.0.0.1",
        port=0,
        server_ssl=peer_server_context(settings) if settings else None,
        client_ssl=peer_client_context(settings) if settings else None,
    )
    port = await nursery.start(transport.run)
    transport.advertise = f"127.0.0.1:{port}"
    return transport


@pytest.mark.parametrize("mutual", [False, True])
async def test_peers_talk_over_wss_and_refuse_plaintext_and_strangers(
    pki: Pki, mutual: bool
) -> None:
    good = Settings(**pki.settings(tls_peer_client_auth=mutual))
    async with trio.open_nursery() as nursery:
        a = await start_peer(nursery, "a", good)
        b = await start_peer(nursery, "b", good)
        a.send_to_address(b.advertise, {"kind": "ping"})
        with trio.fail_after(10):
            got = await b.receive()
        assert got.sender == "a"
        # a plaintext peer and one with another CA's certificate never get a message in
        plain = await start_peer(nursery, "plain", None)
        stranger = await start_peer(nursery, "stranger", Settings(**pki.settings(stranger=True)))
        plain.send_to_address(b.advertise, {"kind": "ping"})
        stranger.send_to_address(b.advertise, {"kind": "ping"})
        # and a good node refuses to talk to a listener whose certificate it cannot verify
        a.send_to_address(stranger.advertise, {"kind": "ping"})
        # a message sent after the intruders' attempts arrives, and theirs never did
        await trio.sleep(0)  # let the dialers start
        a.send_to_address(b.advertise, {"kind": "after"})
        with trio.fail_after(10):
            got = await b.receive()
        assert (got.sender, got.message["kind"]) == ("a", "after")
        with trio.move_on_after(1.0):
            extra = await stranger.receive()
            pytest.fail(f"the stranger accepted a message from {extra.sender}")
        nursery.cancel_scope.cancel()


async def test_mutual_tls_refuses_a_dialer_without_a_certificate(pki: Pki) -> None:
    settings = Settings(**pki.settings(tls_peer_client_auth=True))
    async with trio.open_nursery() as nursery:
        listener = await start_peer(nursery, "l", settings)
        no_cert = ssl.create_default_context(cafile=str(pki.ca_file))
        url = f"wss://{listener.advertise}/"
        refused = (ssl.SSLError, OSError, trio.BrokenResourceError, HandshakeError)
        with trio.move_on_after(5):  # refused, or left hanging: either way it never talks
            try:
                async with open_websocket_url(url, ssl_context=no_cert) as ws:
                    await ws.send_message("{}")
                    await ws.get_message()
            except refused:
                pass
        assert listener.rejected == 0  # the TLS layer refused it: the listener never saw it
        # the same dialer with the node's certificate gets through TLS to the hello check
        with_cert = peer_client_context(settings)
        before = listener.rejected
        async with open_websocket_url(
            url, ssl_context=with_cert, connect_timeout=5, disconnect_timeout=1
        ) as ws:
            await ws.send_message("{}")  # not a hello: the listener refuses it
            await wait_until(lambda: listener.rejected > before, timeout=10)
        nursery.cancel_scope.cancel()


async def test_a_three_node_cluster_elects_over_wss(
    pki: Pki, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With auth on too: the cluster-wide workers view asks the peers' HTTPS APIs
    with a node token, checking their certificates against TLS_CA_FILE: SSL_CERT_FILE
    names another CA here (the view used it, and showed every peer unreachable)."""
    from tests.test_auth import CHEAP

    users = Users.open_or_create(tmp_path / "users.json", CHEAP)
    users.add("ops", Role.ADMIN, "ops-password")
    users.save()
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.stranger_ca_file))
    cluster_ports = [free_port() for _ in range(3)]
    peers = ",".join(f"127.0.0.1:{p}" for p in cluster_ports)
    prefix = "tls" + tmp_path.name[-8:].replace("-", "")
    nodes: list[Node] = []
    async with trio.open_nursery() as nursery:
        for i, cluster_port in enumerate(cluster_ports):
            settings = Settings(
                node_id=f"n{i}",
                server_host="127.0.0.1",
                server_port=free_port(),
                metrics_port=0,
                worker_count=1,
                redis_url=redis_url,
                redis_key_prefix=prefix,
                cluster_port=cluster_port,
                cluster_host="127.0.0.1",
                cluster_advertise=f"127.0.0.1:{cluster_port}",
                cluster_peers=tuple(peers.split(",")),
                cluster_secret="cluster-secret",
                election_algorithm="bully",
                election_timeout=0.5,
                election_interval=0.2,
                shutdown_grace=0.2,
                auth_enabled=True,
                jwt_secret="c" * 32,
                users_file=str(tmp_path / "users.json"),
                **pki.settings(tls_peer_client_auth=True),
            )
            nodes.append(
                await nursery.start(functools.partial(serve, settings, handle_signals=False))
            )

        def agreed() -> bool:
            leaders = {n.leadership.view.leader_id for n in nodes}
            return len(leaders) == 1 and None not in leaders

        await wait_until(agreed, timeout=30)

        async def alive() -> set[str]:
            return {m["node_id"] for m in await nodes[0].members() if m.get("state") == "alive"}

        with trio.fail_after(30):  # membership over the same WSS links
            while await alive() != {"n0", "n1", "n2"}:
                await trio.sleep(0.05)
        workers = await nodes[0].cluster_workers()
        assert {w["node_id"] for w in workers} == {"n0", "n1", "n2"}, workers
        assert not [w for w in workers if w.get("status") == "unreachable"], workers
        for node in nodes:
            node.request_stop()
        for node in nodes:
            await node.stopped.wait()
        nursery.cancel_scope.cancel()


async def test_a_nodes_calls_to_peers_present_its_certificate_to_a_mutual_tls_api(
    pki: Pki,
) -> None:
    """An HTTPS API that requires a client certificate signed by the CA: the node's own
    calls (``peer_http_verify``) get through, a client without a certificate does not."""
    node = make_node(**pki.settings(tls_peer_client_auth=True))
    port = free_port()
    config = hypercorn_config(node.settings, "127.0.0.1", port)
    config.graceful_timeout = 0.1
    config.ca_certs = str(pki.ca_file)
    config.verify_mode = ssl.CERT_REQUIRED
    url = f"https://127.0.0.1:{port}/health"
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await nursery.start(functools.partial(hypercorn_serve, create_app(node), config))
        async with httpx.AsyncClient(verify=peer_http_verify(node.settings)) as client:
            assert (await client.get(url)).status_code == 200
        async with httpx.AsyncClient(verify=pki.client_context()) as client:
            with pytest.raises(httpx.HTTPError):
                await client.get(url)
        node.request_stop()
        await node.stopped.wait()
        nursery.cancel_scope.cancel()
    assert peer_http_verify(Settings()) is True  # without TLS: httpx's default


async def test_the_cli_trusts_a_ca_file_for_login_and_every_command(
    pki: Pki, tmp_path: Path
) -> None:
    """``--ca-file`` / JOBTRIO_CA_FILE: before it, a private CA needed SSL_CERT_FILE."""
    from tests.test_auth_cli import run

    path = tmp_path / "users.json"
    users = Users.open_or_create(path)
    users.add("carol", Role.USER, "carols-password")
    users.save()
    node = make_node(**pki.settings(), auth_enabled=True, jwt_secret="j" * 32, users_file=str(path))
    port = free_port()
    config = hypercorn_config(node.settings, "127.0.0.1", port)
    config.graceful_timeout = 0.1
    url = f"https://127.0.0.1:{port}"
    clean = {"SSL_CERT_FILE": "", "SSL_CERT_DIR": "", "JOBTRIO_CA_FILE": "", "JOBTRIO_TOKEN": ""}

    def cli(*args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
        return run(*args, "--url", url, stdin=stdin, env={**clean, **env})

    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await nursery.start(functools.partial(hypercorn_serve, create_app(node), config))
        ca = str(pki.ca_file)
        password = "carols-password\n"
        logged = await trio.to_thread.run_sync(
            functools.partial(cli, "login", "carol", "--ca-file", ca, stdin=password)
        )
        assert logged.returncode == 0, logged.stderr
        token = logged.stdout.strip()
        listed = await trio.to_thread.run_sync(
            functools.partial(cli, "jobs", "list", "--token", token, JOBTRIO_CA_FILE=ca)
        )
        assert listed.returncode == 0, listed.stderr
        for refused in (
            functools.partial(cli, "login", "carol", stdin=password),
            functools.partial(cli, "jobs", "list", "--token", token),
            functools.partial(
                cli, "jobs", "list", "--token", token, "--ca-file", str(pki.stranger_ca_file)
            ),
        ):
            result = await trio.to_thread.run_sync(refused)
            assert result.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in result.stderr
            assert "Traceback" not in result.stderr
        node.request_stop()
        await node.stopped.wait()
        nursery.cancel_scope.cancel()
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    result = await trio.to_thread.run_sync(
        functools.partial(cli, "jobs", "list", "--ca-file", str(bad))
    )
    assert result.returncode == 2 and "not a PEM file of CA certificates" in result.stderr


def test_a_bad_certificate_or_key_is_one_line(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="TLS_CERT_FILE"):
        peer_server_context(Settings(**pki.settings(tls_key_file=str(pki.stranger_key))))
    missing = str(tmp_path / "none.pem")
    with pytest.raises(ConfigError) as refused:
        peer_server_context(Settings(**pki.settings(tls_cert_file=missing)))
    # the missing file by its variable and path (ssl itself names none: it said "None")
    assert str(refused.value) == f"TLS_CERT_FILE={missing} is not usable: no such file"
    bad_ca = tmp_path / "bad-ca.pem"
    bad_ca.write_text("not a certificate")
    with pytest.raises(ConfigError, match="TLS_CA_FILE"):
        peer_client_context(Settings(**pki.settings(tls_ca_file=str(bad_ca))))


# --------------------------------------------------------------------------
# metrics


@pytest.mark.parametrize(
    "changes, good, bad",
    [
        (
            {"metrics_bearer_token": "scrape-token"},
            {"Authorization": "Bearer scrape-token"},
            [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}],
        ),
        (
            {"metrics_basic_auth": "prom:pw"},
            {"Authorization": "Basic " + base64.b64encode(b"prom:pw").decode()},
            [{}, {"Authorization": "Basic " + base64.b64encode(b"prom:no").decode()}],
        ),
    ],
)
async def test_metrics_require_their_credentials_over_https(
    pki: Pki, changes: dict[str, str], good: dict[str, str], bad: list[dict[str, str]]
) -> None:
    node = make_node(**pki.settings(**changes))
    port = free_port()
    config = hypercorn_config(node.settings, "127.0.0.1", port)
    config.graceful_timeout = 0.1
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await nursery.start(functools.partial(hypercorn_serve, create_metrics_app(node), config))
        async with httpx.AsyncClient(verify=pki.client_context()) as client:
            url = f"https://127.0.0.1:{port}/metrics"
            ok = await client.get(url, headers=good)
            assert ok.status_code == 200 and "job_processing_duration_seconds" in ok.text
            for headers in bad:
                refused = await client.get(url, headers=headers)
                assert refused.status_code == 401 and "WWW-Authenticate" in refused.headers
        node.request_stop()
        await node.stopped.wait()
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------
# Redis over TLS


@pytest.fixture
def tls_redis(pki: Pki, tmp_path: Path) -> Iterator[int]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not on the PATH")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port", "0",
            "--tls-port", str(port),
            "--tls-cert-file", str(pki.cert_file),
            "--tls-key-file", str(pki.key_file),
            "--tls-ca-cert-file", str(pki.ca_file),
            "--tls-auth-clients", "no",
            "--save", "",
            "--dir", str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


async def test_redis_over_rediss_with_the_ca(pki: Pki, tls_redis: int) -> None:
    from jobtrio.backends.base import BackendUnavailable
    from jobtrio.backends.redis import RedisBroker
    from jobtrio.submission import validate_submission

    url = f"rediss://127.0.0.1:{tls_redis}/0?ssl_ca_certs={pki.ca_file}&ssl_cert_reqs=required"
    broker = await RedisBroker.open(url, prefix="tls")
    try:

        async def reachable() -> bool:
            try:
                await broker.ping()
                return True
            except BackendUnavailable:
                return False

        with trio.fail_after(10):  # the server is starting
            while not await reachable():
                await trio.sleep(0.05)
        job = validate_submission({"type": "noop"}, 1_700_000_000.0)
        [stored] = await broker.enqueue([job], 1_700_000_000.0)
        assert stored.id == job.id
    finally:
        await broker.close()
    for refused in (
        f"redis://127.0.0.1:{tls_redis}/0",
        f"rediss://127.0.0.1:{tls_redis}/0?ssl_ca_certs={pki.stranger_ca_file}",
    ):
        other = await RedisBroker.open(refused, prefix="tls")
        try:
            with trio.fail_after(30), pytest.raises(BackendUnavailable):
                await other.ping()
        finally:
            await other.close()


async def test_the_client_trusts_a_private_ca_through_ssl_cert_file(
    pki: Pki, https_node: tuple[Node, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobtrio.client import Client, ConnectionFailed

    _, port = https_node
    url = f"https://127.0.0.1:{port}"

    def submit() -> str:
        with Client(url) as client:
            return client.submit("noop").id

    monkeypatch.setenv("SSL_CERT_FILE", str(pki.stranger_ca_file))
    with pytest.raises(ConnectionFailed):
        await trio.to_thread.run_sync(submit)
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_file))
    assert await trio.to_thread.run_sync(submit)


async def test_the_client_takes_a_ca_file_path_without_a_deprecation_warning(
    pki: Pki, https_node: tuple[Node, int]
) -> None:
    """``verify="ca.pem"`` (docs/client.md) went to httpx as a path, which it deprecates."""
    import warnings

    from jobtrio.client import Client

    _, port = https_node

    def submit() -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with Client(f"https://127.0.0.1:{port}", verify=str(pki.ca_file)) as client:
                return client.submit("noop").id

    assert await trio.to_thread.run_sync(submit)
    with pytest.raises(ValueError, match="not a PEM file of CA certificates"):
        Client("https://127.0.0.1:1", verify=str(pki.key_file))
