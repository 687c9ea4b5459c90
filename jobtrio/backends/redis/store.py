"""The job records, nodes, elections and schedules on Redis."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import redis

from ...jobs import Job, JobStatus
from ..base import JobQuery, NodeRecord, Page, Store
from .codec import SEP, RawJob, as_text, check_name, hash_tag, jtext, num, record_parts
from .scripts import LuaScript, OnRedis, lua_library, lua_source
from .wire import RedisConnection

#: Newest election records kept in the Store.
ELECTIONS_KEPT = 1000
#: Store records per put_many script, so one huge batch cannot stall Redis.
PUT_CHUNK = 500
#: Ids one query script may examine before handing back to Python (keeps Redis responsive).
QUERY_BUDGET = 2000


class RedisStore(OnRedis, Store):
    name = "redis"

    def __init__(
        self, connection: RedisConnection, prefix: str = "jobtrio", *, owns_connection: bool = True
    ) -> None:
        self.connection = connection
        self.prefix = prefix
        self._p = hash_tag(prefix)
        self._keys = [self._p]
        self._owns = owns_connection
        client = connection.client
        self._put = self._script(client, "store_put")
        self._delete = self._script(client, "store_delete")
        self._query = self._script(client, "store_query")

    def _script(self, client: Any, name: str) -> LuaScript:
        return LuaScript(client, lua_source(name), lua_library(name, self._p))

    async def put_many(self, jobs: Sequence[Job]) -> None:
        for start in range(0, len(jobs), PUT_CHUNK):
            args: list[str] = []
            for job in jobs[start : start + PUT_CHUNK]:
                body, m, created = record_parts(job)
                args.append(
                    SEP.join(
                        (
                            check_name(job.id, "job id"),
                            str(job.version),
                            str(job.status),
                            created,
                            body,
                            m,
                            job.type,
                        )
                    )
                )
            try:
                await self._call(self._put, args)
            except redis.ResponseError as exc:
                if not str(exc).startswith("NOTRECORDS "):
                    raise
                raise ValueError(
                    f"job {str(exc).split(' ', 1)[1]} is held by a RedisBroker on the prefix "
                    f"{self.prefix!r} that does not keep the records: a RedisStore shares a "
                    "prefix only with a RedisBroker opened with records=True"
                ) from None

    async def get(self, job_id: str) -> Job | None:
        client, key = self.connection.client, self._p + "job:" + job_id
        body, m = await self.connection.run(lambda: client.hmget(key, "b", "m"))
        return None if body is None else RawJob.of(as_text(body), as_text(m)).job()

    async def query(self, query: JobQuery) -> Page:
        if query.statuses is not None and not query.statuses:
            return Page([], None)
        want = query.limit + 1
        fixed = [
            "" if query.created_after is None else num(query.created_after),
            "" if query.created_before is None else num(query.created_before),
            query.type or "",
            "" if query.owner is None else jtext(query.owner),
            "" if query.queue is None else jtext(query.queue),
        ]
        if query.statuses is None:
            fixed.append("-1")
        else:
            fixed.append(str(len(query.statuses)))
            fixed.extend(sorted(str(s) for s in query.statuses))
        cursor = query.cursor or ""
        raw: list[bytes] = []  # b and m of each record found
        while True:
            args = [cursor, str(want - len(raw) // 2), str(QUERY_BUDGET), *fixed]
            reply = await self._call(self._query, args)
            raw += reply[2:]
            if len(raw) >= 2 * want or reply[1] == b"1":
                break
            cursor = as_text(reply[0])
        jobs = [
            RawJob.of(raw[i].decode(), raw[i + 1].decode()).job()
            for i in range(0, min(len(raw), 2 * query.limit), 2)
        ]
        more = len(raw) > 2 * query.limit
        return Page(jobs, jobs[-1].id if more and jobs else None)

    async def delete(self, job_id: str) -> bool:
        return bool(await self._call(self._delete, [job_id]))

    async def count_by_status(self) -> dict[str, int]:
        client, p = self.connection.client, self._p
        names = [str(s) for s in JobStatus]

        def count() -> list[int]:
            pipe = client.pipeline(transaction=False)
            for name in names:
                pipe.zcard(p + "rec-st:" + name)
            return pipe.execute()

        return dict(zip(names, await self.connection.run(count), strict=True))

    async def put_node(self, node: NodeRecord) -> None:
        client, key = self.connection.client, self._p + "nodes"
        text = json.dumps(asdict(node), separators=(",", ":"))
        await self.connection.run(lambda: client.hset(key, node.node_id, text))

    async def list_nodes(self) -> list[NodeRecord]:
        client, key = self.connection.client, self._p + "nodes"
        raw = await self.connection.run(lambda: client.hvals(key))
        return sorted((NodeRecord(**json.loads(v)) for v in raw), key=lambda n: n.node_id)

    async def delete_node(self, node_id: str) -> bool:
        client, key = self.connection.client, self._p + "nodes"
        return bool(await self.connection.run(lambda: client.hdel(key, node_id)))

    async def add_election(self, record: dict[str, Any]) -> None:
        client, key = self.connection.client, self._p + "elections"
        text = json.dumps(record, separators=(",", ":"))

        def add() -> None:
            pipe = client.pipeline(transaction=True)
            pipe.lpush(key, text)
            pipe.ltrim(key, 0, ELECTIONS_KEPT - 1)
            pipe.execute()

        await self.connection.run(add)

    async def list_elections(self, limit: int = 50) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        client, key = self.connection.client, self._p + "elections"
        raw = await self.connection.run(lambda: client.lrange(key, 0, limit - 1))
        return [json.loads(r) for r in raw]

    async def put_schedule(self, schedule: dict[str, Any]) -> None:
        client, key = self.connection.client, self._p + "schedules"
        text = json.dumps(schedule, separators=(",", ":"))
        await self.connection.run(lambda: client.hset(key, schedule["name"], text))

    async def list_schedules(self) -> list[dict[str, Any]]:
        client, key = self.connection.client, self._p + "schedules"
        raw = await self.connection.run(lambda: client.hgetall(key))
        return [json.loads(raw[name]) for name in sorted(raw)]

    async def delete_schedule(self, name: str) -> bool:
        client, key = self.connection.client, self._p + "schedules"
        return bool(await self.connection.run(lambda: client.hdel(key, name)))

    async def ping(self) -> None:
        await self.connection.ping()

    async def close(self) -> None:
        if self._owns:
            await self.connection.close()
