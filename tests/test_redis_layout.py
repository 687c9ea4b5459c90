"""The job's Redis layout is declared once (jobtrio/backends/redis/layout.py).

A field added to a copy of the declaration travels through the real Lua
scripts on a real redis-server and back through the generated codec, with
nothing else edited: the constants the scripts index with, the patterns that
cut a job and an enqueue argument, the document the scripts write and the
codec's functions all follow the declaration.
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from typing import Any

import pytest
import redis

from jobtrio.backends.redis import codec
from jobtrio.backends.redis.layout import BODY, LAYOUT, VALUES, Layout, Value
from jobtrio.backends.redis.scripts import broker_script, lua_source
from jobtrio.jobs import Attempt, Job, JobStatus

NOW = 1_700_000_000.123456


@dataclasses.dataclass(slots=True)
class LabelledJob(Job):
    """A Job with one field more, as a future version of Job might have."""

    labels: Any = None


def plus_layout() -> Layout:
    """The declaration with a ``labels`` value in the middle of ``m`` (every later one moves)."""
    values = list(VALUES)
    values.insert([v.lua for v in values].index("ERR") + 1, Value("LBL", "labels"))
    return Layout(values=tuple(values), job_class=LabelledJob)


def constants(lua: str) -> list[str]:
    """The names of ``local A, B, ... = 1, 2, ...`` in a script, in the order of their numbers."""
    m = re.search(r"^local (S, [A-Z, ]+) =\s*\n\s*([0-9, ]+)$", lua, re.M)
    assert m is not None, "the script declares no positional constants"
    names = [n.strip() for n in m.group(1).split(",")]
    numbers = [int(n) for n in m.group(2).split(",")]
    assert numbers == list(range(1, len(names) + 1))
    return names


def test_the_scripts_index_m_as_declared():
    for name in ("claim", "finish", "enqueue", "store_put"):
        source = lua_source(name) if name == "store_put" else broker_script(name, True)
        assert constants(source) == [v.lua for v in VALUES]
        assert f"local NF = {len(VALUES)}\n" in source
    plus = plus_layout()
    assert constants(broker_script("claim", False, plus)) == [v.lua for v in plus.values]


def test_the_documents_hold_every_declared_field_once():
    doc_lua = LAYOUT.lua_doc()
    for value in VALUES:
        if value.kind in ("plain", "status"):
            assert doc_lua.count(f'"{value.field}":') == 1, value.field
    assert doc_lua.count('"attempts":') == 1
    # every Job field is in the body or in m, and nowhere else
    declared = set(BODY) | {v.field for v in VALUES}
    assert declared == {f.name for f in dataclasses.fields(Job)}


def test_a_declaration_that_misses_a_job_field_is_refused_by_name():
    with pytest.raises(ValueError, match="labels"):
        Layout(job_class=LabelledJob)
    with pytest.raises(ValueError, match="declared twice"):
        Layout(values=(*VALUES, Value("S", "status", "status")))


def test_an_added_field_round_trips_through_the_real_scripts(redis_server):
    plus = plus_layout()
    fns = plus.functions(codec.HELPERS)
    client = redis.Redis.from_url(redis_server.url)
    keys = ["{t" + uuid.uuid4().hex[:12] + "}:"]

    def run(name: str, args: list[Any]) -> Any:
        return client.register_script(broker_script(name, False, plus))(keys=keys, args=args)

    labels = {"team": "ž🐢", "weights": [1, 2.5, None], "precise": 1700000000.123456}
    job = LabelledJob(
        id="01HF7YAT3VJ3TH6DRRPSRWY48D",
        type="email",
        payload={"created_at": 1, "x": ',"labels":2'},
        created_at=NOW,
        updated_at=NOW,
        labels=labels,
    )
    try:
        body, values = fns["encode"](job, JobStatus.PENDING)
        assert values[plus.index("LBL")] == codec.enc(labels)
        assert run("enqueue", [codec.num(NOW), *fns["enqueue_arg"](job, body, values)]) == b""

        token = "tok"
        reply = run("claim", [codec.num(NOW + 1), '"n1"', codec.num(NOW + 31), "1", token])
        got_token, b, m = (part.decode() for part in reply)
        claimed = fns["decode"](b, m.split(codec.SEP))
        assert got_token == token and type(claimed) is LabelledJob
        assert claimed.labels == labels
        assert claimed.status is JobStatus.RUNNING and claimed.version == 1
        assert claimed.started_at == NOW + 1 and claimed.node_id == "n1"
        assert claimed.attempts == [Attempt(1, "n1", None, NOW + 1)]

        item = codec.pack_values((job.id, token, "completed", '"n1/w0"', '{"ok":1}', "null", ""))
        b, m = (part.decode() for part in run("finish", [codec.num(NOW + 2), item]))
        done = fns["decode"](b, m.split(codec.SEP))
        assert done.status is JobStatus.COMPLETED and done.result == {"ok": 1}
        assert done.labels == labels and done.version == 2
        assert done.attempts == [Attempt(1, "n1", "n1/w0", NOW + 1, NOW + 2, "completed", None)]

        # the generated dumps writes every field in the class' order, without parsing
        text = fns["dumps"](b, m.split(codec.SEP))
        decoded = json.loads(text)
        assert list(decoded) == [f.name for f in dataclasses.fields(LabelledJob)]
        assert decoded["labels"] == labels and decoded["payload"] == job.payload
        assert json.loads(fns["doc"](b, m.split(codec.SEP))) == decoded

        # the document the Lua doc() writes carries it too
        [document] = run("get", [job.id])
        assert json.loads(document) == decoded
    finally:
        for key in client.scan_iter(match=keys[0] + "*"):
            client.delete(key)
        client.close()


def test_the_declared_layout_encodes_as_the_document_reads():
    job = Job(
        id="01HF7YAT3VJ3TH6DRRPSRWY48D",
        type='q"\\ž',
        payload={"created_at": 5},
        created_at=NOW,
        updated_at=NOW + 1,
        idempotency_key='k"1',
        attempts=[Attempt(1, "n1", None, NOW, NOW + 1, "failed", "e"), Attempt(2, 'n"2', "w", NOW)],
        version=3,
    )
    body, values = codec.encode(job, job.status)
    raw = codec.RawJob(body, values)
    assert raw.header() == (job.id, job.type, job.status, 3)
    assert raw.job() == job
    assert raw.dumps() == job.dumps()
    assert Job.loads(codec.doc(body, values)) == job


def test_the_generated_code_can_be_read():
    """``python -m jobtrio.backends.redis`` prints what the declaration generates (docs)."""
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-m", "jobtrio.backends.redis"], capture_output=True, text=True, check=True
    )
    assert run.stderr == ""
    assert LAYOUT.lua() in run.stdout and LAYOUT.python() in run.stdout


def test_an_enqueues_arguments_are_read_whole(redis_server):
    """b and m are arguments of their own, the type the header's last value: text
    outside ASCII in them (a writer that kept it as it is) and a type holding 0x1f
    come back whole."""
    client = redis.Redis.from_url(redis_server.url)
    script = client.register_script(
        lua_source("prelude")
        + "\n"
        + LAYOUT.lua()
        + "\nreturn enqueue_fields(ARGV[1], ARGV[2], ARGV[3])\n"
    )
    job = Job(id="01HF7YAT3VJ3TH6DRRPSRWY48D", type="t\x1fž🐢", queue="ž", created_at=NOW)
    body, values = codec.encode(job, job.status)
    body = body.replace('"payload":{}', '"payload":{"a":"ž🐢"}')
    values[LAYOUT.index("RES")] = '"ž"'
    try:
        cut = [
            part.decode()
            for part in script(keys=["{t}:"], args=codec.enqueue_arg(job, body, values))
        ]
    finally:
        client.close()
    reads = [values[LAYOUT.index(r)] for r in LAYOUT.enqueue_reads]
    assert cut == [job.id, codec.num(NOW), *reads, body, codec.SEP.join(values), "ž", job.type]
