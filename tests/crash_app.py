"""Processors for the crash tests, served with ``jobtrio serve --app tests.crash_app:registry``."""

from __future__ import annotations

import os

import trio

from jobtrio.processors import JobContext, Registry

registry = Registry()


@registry.processor("slow")
async def slow(ctx: JobContext) -> dict[str, str]:
    await trio.sleep(float(ctx.payload.get("seconds", 0.3)))
    return {"ran_on": ctx.node_id}


@registry.processor("crash-node")
async def crash_node(ctx: JobContext) -> None:
    """Dies the way a segfault or the OOM killer would: no cleanup at all."""
    os._exit(70)
