"""The event stream client's cost per event and peak memory for two message limits.

    python bench/bench_event_client.py [--events 200000] [--pairs 3] [--client async|sync]
        [--limits 1048576,16777216]

httpx-ws's ``max_message_size_bytes`` is both the largest message accepted (since
0.10) and the most read from the socket at once, so the client's limit
(``jobtrio.client.event_follow.MAX_MESSAGE_BYTES``) may cost memory or CPU. This
serves, from a process of its own, a bare websocket that sends ``stream.ready``
then ``--events`` job events in ``lines=true`` messages of 500 (as a node
replaying its log does, about 120 KB each), and reads them with ``Client.events``
or ``AsyncClient.events`` in a fresh process per run, the limits alternated,
``--pairs`` times. It prints each run's CPU (user + system) per event and peak
RSS, then the medians. Quote ``uptime`` beside the figures. Under httpx-ws 0.10 a
limit below a message's size (64 KiB, its default) ends the read with 1009.

At 2332332 (httpx-ws 0.10.0, 200,000 events, 3 pairs, load 7.1-7.5), async client:
1 MiB 17.85 us/event, 50.5 MiB peak RSS; 16 MiB 17.70 us/event, 91.9 MiB. Blocking
client: 4.85 and 4.85 us/event, 89.4 and 86.6 MiB (its RSS spread 78-98 MiB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time

LINES = 500


def _message(k: int) -> str:
    return "\n".join(
        json.dumps(
            {
                "id": f"1700000000000-{k * LINES + i}",
                "kind": "job.completed",
                "at": "2026-12-07T12:00:00.000Z",
                "node": "bench",
                "job_id": f"{k * LINES + i:026d}",
                "type": "resize",
                "status": "completed",
                "priority": 5,
                "retry_count": 0,
                "max_retries": 3,
                "worker_id": "node-1/w3",
                "error": None,
                "owner": None,
                "attempt": 1,
            },
            separators=(",", ":"),
        )
        for i in range(LINES)
    )


def serve(port: int, n_messages: int) -> None:
    import trio
    from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

    ready = json.dumps({"kind": "stream.ready", "node": "bench"})
    messages = [_message(k) for k in range(n_messages)]

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            await ws.send_message(ready)
            for message in messages:
                await ws.send_message(message)
            await ws.get_message()  # until the client leaves
        except ConnectionClosed:
            pass

    trio.run(lambda: serve_websocket(handler, "127.0.0.1", port, None))


def read(url: str, n: int, kind: str, limit: int) -> None:
    import trio

    import jobtrio.client.async_client as async_client
    import jobtrio.client.sync_client as sync_client
    from jobtrio.client import AsyncClient, Client

    async_client.MAX_MESSAGE_BYTES = sync_client.MAX_MESSAGE_BYTES = limit  # type: ignore[attr-defined]
    start = os.times()
    if kind == "sync":
        got = 0
        with Client(url) as client:
            for _ in client.events(reconnect=False):
                got += 1
                if got == n:
                    break
    else:

        async def main() -> None:
            got = 0
            async with AsyncClient(url) as client, client.events(reconnect=False) as events:
                async for _ in events:
                    got += 1
                    if got == n:
                        break

        trio.run(main)
    end = os.times()
    cpu = (end.user - start.user) + (end.system - start.system)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"us_per_event": cpu / n * 1e6, "max_rss_mib": rss}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--client", choices=("async", "sync"), default="async")
    parser.add_argument("--limits", default="1048576,16777216")
    parser.add_argument("--serve", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--read", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    if args.read:
        url, n, kind, limit = args.read
        read(url, int(n), kind, int(limit))
        return
    limits = [int(x) for x in args.limits.split(",")]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    n_messages = -(-args.events // LINES)
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), str(n_messages)])
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        results: dict[int, list[dict[str, float]]] = {limit: [] for limit in limits}
        for _ in range(args.pairs):
            for limit in limits:
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--read",
                        url,
                        str(args.events),
                        args.client,
                        str(limit),
                    ],  # fmt: skip
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                run = json.loads(out)
                results[limit].append(run)
                print(f"limit {limit:>9}: {run['us_per_event']:.2f} us/event, "
                      f"max RSS {run['max_rss_mib']:.1f} MiB", flush=True)  # fmt: skip
        for limit, runs in results.items():
            cpu = statistics.median(r["us_per_event"] for r in runs)
            rss = statistics.median(r["max_rss_mib"] for r in runs)
            print(f"median limit {limit:>9}: {cpu:.2f} us/event, max RSS {rss:.1f} MiB")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
