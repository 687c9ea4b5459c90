"""Two builds of processors for the two-node queue test (``jobtrio serve --app ...``).

``gpu`` runs ``render``, ``mail`` runs ``mail``: a job of one type must only
ever run on the node built with its processor (both have the built-ins).
"""

from __future__ import annotations

import trio

from jobtrio.processors import JobContext, Registry

gpu = Registry()
mail = Registry()


@gpu.processor("render")
async def render(ctx: JobContext) -> dict[str, str]:
    await trio.sleep(0.01)
    return {"ran_on": ctx.node_id}


@mail.processor("mail")
async def send_mail(ctx: JobContext) -> dict[str, str]:
    await trio.sleep(0.01)
    return {"ran_on": ctx.node_id}
