"""Regression: two ingest workers must never share an MQTT client id.

The broker disconnects a client when another connects with the same id; ingest workers built
their id from ``id(self)``, which is the same in identically spawned processes, so a second
worker kept taking over the first and messages in flight were lost.
"""

from __future__ import annotations

import multiprocessing

from trustfleet.server.ingest_worker import ingest_client_id


def _child_id(queue: multiprocessing.Queue[str]) -> None:
    queue.put(ingest_client_id("svc.ingest"))


def test_ids_differ_within_and_across_processes() -> None:
    ctx = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[str] = ctx.Queue()
    procs = [ctx.Process(target=_child_id, args=(queue,)) for _ in range(2)]
    for proc in procs:
        proc.start()
    ids = {queue.get(timeout=30) for _ in procs}
    for proc in procs:
        proc.join(timeout=30)
    ids |= {ingest_client_id("svc.ingest"), ingest_client_id("svc.ingest")}
    assert len(ids) == 4
    assert all(i.startswith("svc.ingest-ingest-") for i in ids)
