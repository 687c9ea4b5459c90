"""Custom processors for a node: one async, one blocking, in one Registry.

Serve them from the repository root (the current directory is put on the
import path, as gunicorn and uvicorn do)::

    jobtrio serve --app examples.processors:registry

then feed the node with ``python -m examples.producer`` or by hand::

    jobtrio submit thumbnail --payload '{"width": 640, "height": 480}' --wait
    jobtrio submit webhook --payload '{"url": "https://example.com/hook"}' --wait

The built-in processors (noop, echo, sleep, fail, email, spin) stay
registered next to these. Which kind to write:

* ``async def`` when the work waits on I/O with trio-aware libraries (httpx,
  trio sockets): it runs in the node's event loop, thousands at once;
* ``blocking=True`` for ordinary blocking code (requests, a database
  driver, file work): it runs in a thread, so it never stalls the loop
  that renews leases and answers the API;
* ``blocking="process"`` for CPU-bound work, which would otherwise hold the
  GIL: it runs in a worker process and is killed if the job is cancelled.

A processor returns a JSON-able result (stored on the job) or raises to fail
the attempt; the job is retried with backoff up to its ``max_retries``.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import trio

from jobtrio.processors import JobContext, Registry

registry = Registry()


class PermanentError(ValueError):
    """Bad input. Like any exception it fails the attempt; the message lands in ``job.error``."""


@registry.processor("webhook", timeout=30)
async def deliver_webhook(ctx: JobContext) -> dict[str, Any]:
    """Pretend to POST the payload to ``url`` (async: waits without blocking the node)."""
    url = ctx.payload.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise PermanentError("webhook needs payload.url, an http(s) URL")
    await trio.sleep(0.05)  # the network round trip a real client (httpx) would make
    return {"delivered_to": url, "attempt": ctx.attempt}


@registry.processor("thumbnail", blocking=True, timeout=60)
def make_thumbnail(ctx: JobContext) -> dict[str, Any]:
    """Pretend to resize an image (blocking: runs in a worker thread)."""
    width = int(ctx.payload.get("width", 1024))
    height = int(ctx.payload.get("height", 768))
    if width <= 0 or height <= 0:
        raise PermanentError("thumbnail needs a positive payload.width and payload.height")
    time.sleep(0.02)  # blocking I/O, e.g. reading the image from disk
    scale = min(1.0, 160 / max(width, height))
    digest = hashlib.sha256(f"{ctx.job_id}:{width}x{height}".encode()).hexdigest()[:12]
    return {"width": round(width * scale), "height": round(height * scale), "key": digest}
