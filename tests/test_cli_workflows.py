"""``jobtrio workflows`` against a node served over real HTTP (the test_cli harness):
exit 0 on success, 1 on a refusal or a workflow that did not complete, 2 on bad input."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from jobtrio.cli import main
from tests.test_api import make_node
from tests.test_cli import Run
from tests.test_client import Served, serve_node


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    node = make_node()
    async with trio.open_nursery() as nursery:
        url = await serve_node(nursery, node)
        yield Served(node, url)
        node.request_stop()
        await node.stopped.wait()
        nursery.cancel_scope.cancel()


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], served: Served) -> Any:
    async def run(*args: str) -> Run:
        capsys.readouterr()
        code = await trio.to_thread.run_sync(main, [*args, "--url", served.url])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


CHORD = {
    "chord": {
        "group": [{"type": "echo", "payload": {"n": 1}}, {"type": "echo", "payload": {"n": 2}}],
        "callback": {"type": "echo"},
    }
}


async def test_submit_wait_show_and_cancel(cli: Any, tmp_path: Path) -> None:
    spec = tmp_path / "flow.json"
    spec.write_text(json.dumps(CHORD))
    run = await cli("workflows", "submit", str(spec), "--wait", "--timeout", "30s", "--json")
    assert run.code == 0, run.err
    flow = json.loads(run.out)
    assert flow["kind"] == "chord" and flow["status"] == "completed"
    assert flow["counts"] == {"completed": 3}
    run = await cli("workflows", "show", flow["id"])
    assert run.code == 0, run.err
    assert run.out.startswith(f"workflow {flow['id']}  chord  completed  (3 completed)")
    assert "0,1" in run.out  # the callback runs after members 0 and 1
    run = await cli("workflows", "cancel", flow["id"])
    assert run.code == 0 and "completed" in run.out  # nothing left to cancel
    held = {"chain": [{"type": "sleep", "payload": {"seconds": 60}}, {"type": "noop"}]}
    run = await cli("workflows", "submit", json.dumps(held), "--json")
    assert run.code == 0, run.err
    flow = json.loads(run.out)
    run = await cli("workflows", "cancel", flow["id"], "--json")
    assert run.code == 0
    assert json.loads(run.out)["status"] == "cancelled"


async def test_failures_and_bad_input(cli: Any) -> None:
    failing = {"chain": [{"type": "fail", "max_retries": 0}, {"type": "noop"}]}
    run = await cli("workflows", "submit", json.dumps(failing), "--wait", "--timeout", "30s")
    assert run.code == 1
    assert "failed" in run.out and "dependency" in run.out
    run = await cli("workflows", "submit", '{"chain": []}')
    assert run.code == 1 and "workflow.chain must be a non-empty array" in run.err
    run = await cli("workflows", "submit", "{not json")
    assert run.code == 2 and "is not JSON" in run.err
    run = await cli("workflows", "submit", "/no/such/file.json")
    assert run.code == 2 and "cannot read /no/such/file.json" in run.err
    run = await cli("workflows", "show", "01J9Z6N5G4X8W3QH2K7R1M0P9T")
    assert run.code == 1 and "no workflow with id" in run.err


async def test_a_hostile_workflow_argument_exits_2_naming_the_problem(
    cli: Any, tmp_path: Path
) -> None:
    """Each was a traceback's last line with exit 1 ("unexpected error: UnicodeDecodeError",
    "RecursionError"), or an array read as a file name, or a 5,000-character echo."""
    binary = tmp_path / "flow.bin"
    binary.write_bytes(b"{\xa4\xff\x00")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    cases = [
        (str(binary), "is not UTF-8 text (byte 1 is 0xa4)"),
        (str(deep), "is nested too deeply to be a workflow"),
        ("[1, 2]", "must be a JSON object (chain, group or chord)"),
        ("x" * 5000, "File name too long"),
    ]
    for argument, message in cases:
        run = await cli("workflows", "submit", argument)
        assert run.code == 2, (argument[:40], run.err)
        assert message in run.err and "Traceback" not in run.err and "unexpected" not in run.err
        assert len(run.err) < 1000


async def test_submit_after_another_job(cli: Any) -> None:
    run = await cli("submit", "sleep", "-p", '{"seconds": 0.2}', "--json")
    first = json.loads(run.out)["id"]
    run = await cli("submit", "echo", "--after", first, "--receive-results", "--wait", "--json")
    assert run.code == 0, run.err
    job = json.loads(run.out)
    assert job["depends_on"] == [first] and job["status"] == "completed"
    assert job["dependency_results"] == {first: {"slept": 0.2}}
    run = await cli("submit", "noop", "--after", "01J9Z6N5G4X8W3QH2K7R1M0P9T")
    assert run.code == 1 and "which is not a known job" in run.err and "HTTP 400" in run.err
    run = await cli("submit", "noop", "--receive-results")
    assert run.code == 2 and "need --after" in run.err


async def test_submit_with_an_idempotency_key_twice_is_one_workflow(
    cli: Any, served: Served
) -> None:
    run = await cli("workflows", "submit", json.dumps(CHORD), "--idempotency-key", "k1", "--json")
    assert run.code == 0, run.err
    first = json.loads(run.out)
    run = await cli("workflows", "submit", json.dumps(CHORD), "--idempotency-key", "k1", "--json")
    assert run.code == 0, run.err
    assert json.loads(run.out)["id"] == first["id"]
    assert sum((await served.node.broker.depths()).values()) == 3
    keyed = json.dumps({**CHORD, "idempotency_key": "k2"})
    run = await cli("workflows", "submit", keyed, "--idempotency-key", "k2")
    assert run.code == 2 and "not both" in run.err
    run = await cli("workflows", "submit", json.dumps(CHORD), "--idempotency-key", "")
    assert run.code == 1 and "idempotency_key must be a string of 1 to 200" in run.err
    assert sum((await served.node.broker.depths()).values()) == 3


async def test_the_async_client_retries_a_workflow_with_its_key(served: Served) -> None:
    from jobtrio.client import AsyncClient

    async with AsyncClient(served.url) as client:
        first = await client.submit_workflow(CHORD, idempotency_key="async-1")
        again = await client.submit_workflow(CHORD, idempotency_key="async-1")
        other = await client.submit_workflow(CHORD)
    assert again.id == first.id and other.id != first.id
    assert sum((await served.node.broker.depths()).values()) == 6
