"""The observer turns state the actors keep into events: backend down/up, suspect members."""

from __future__ import annotations

from dataclasses import dataclass

import trio

from jobtrio.observer import NodeObserver
from tests.test_api import make_node


@dataclass
class View:
    node_id: str
    state: str


class Members:
    def __init__(self) -> None:
        self.views = [View("a", "alive"), View("b", "alive")]

    def members(self) -> list[View]:
        return self.views


def test_suspects_and_backend_changes_become_events() -> None:
    node = make_node()
    members = Members()
    node.cluster = members  # type: ignore[assignment]
    observer = NodeObserver(node)
    with node.events.subscribe() as events:
        observer.look()
        members.views[1].state = "suspect"
        observer.look()
        observer.look()  # still suspect: said once
        node.recorder.healthy = False
        node.recorder.last_error = "disk full"
        observer.look()
        node.recorder.healthy = True
        observer.look()
        got = []
        while True:
            try:
                got.append(events.receive_nowait())
            except trio.WouldBlock:
                break
    assert [(e["type"], e.get("member") or e.get("backend")) for e in got] == [
        ("member.suspect", "b"),
        ("backend.down", "store"),
        ("backend.up", "store"),
    ]
    assert got[1]["error"] == "disk full" and got[1]["name"] == "memory"
    assert node.metrics.backend_up.labels("store")._value.get() == 1
