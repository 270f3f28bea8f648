"""Singletons on several service hosts: one leader runs the loop, a successor takes over.

Each "host" is a process running ``_leading.lead`` with a loop that writes one row per step
(what a campaign wave or an attestation challenge would be) into a real PostgreSQL database;
the rows tell which process worked when.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
import sqlalchemy

from trustfleet.sim.process import wait_until
from trustfleet.store import create_engine

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

TAKEOVER_S = 10.0  # the bound

_HOST = """
import signal, sys, threading, time
import sqlalchemy
from trustfleet.server._leading import lead
from trustfleet.store import create_engine

url, name = sys.argv[1], sys.argv[2]
engine = create_engine(url)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())

def loop(term):
    while not term.wait(0.05):
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("INSERT INTO steps (host) VALUES (:h)"), {"h": name})

print("started", flush=True)
lead(engine, "campaigns", loop, stop, check_s=0.2)
print("stopped", flush=True)
"""


@pytest.fixture
def db(postgres_db_url: str) -> Iterator[sqlalchemy.Engine]:
    engine = create_engine(postgres_db_url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("CREATE TABLE steps (id BIGSERIAL PRIMARY KEY, host TEXT)"))
    yield engine
    engine.dispose()


def _host(url: str, name: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOST, url, name],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    return proc


def _steps(db: sqlalchemy.Engine) -> list[str]:
    with db.connect() as conn:
        return list(conn.execute(sqlalchemy.text("SELECT host FROM steps ORDER BY id")).scalars())


def _runs(hosts: list[str]) -> list[str]:
    """The hosts in the order they worked, a run of steps each (A, A, B, B -> A, B)."""
    return [h for i, h in enumerate(hosts) if i == 0 or hosts[i - 1] != h]


def test_one_host_works_and_a_killed_one_is_taken_over(
    postgres_db_url: str, db: sqlalchemy.Engine
) -> None:
    first = _host(postgres_db_url, "a")
    wait_until(lambda: len(_steps(db)) >= 3, timeout_s=TAKEOVER_S, what="a to work", poll_s=0.1)
    second = _host(postgres_db_url, "b")
    procs = [first, second]
    try:
        before = len(_steps(db))
        wait_until(
            lambda: len(_steps(db)) >= before + 10, timeout_s=TAKEOVER_S, what="more steps",
            poll_s=0.1,
        )  # fmt: skip
        assert set(_steps(db)) == {"a"}  # b waits while a leads
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        wait_until(
            lambda: "b" in _steps(db), timeout_s=TAKEOVER_S, what="b to take over", poll_s=0.1
        )
        assert _runs(_steps(db)) == ["a", "b"]  # never both at once, never back and forth
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=10) == 0
        assert second.stdout is not None
        assert second.stdout.read().strip() == "stopped"
        done = len(_steps(db))
        third = _host(postgres_db_url, "c")  # b released the lead when it stopped
        procs.append(third)
        wait_until(lambda: "c" in _steps(db), timeout_s=TAKEOVER_S, what="c to lead", poll_s=0.1)
        assert _runs(_steps(db)[done - 1 :]) == ["b", "c"]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def test_a_stopping_leader_hands_over_at_once(postgres_db_url: str, db: sqlalchemy.Engine) -> None:
    hosts = [_host(postgres_db_url, name) for name in ("a", "b", "c")]
    try:
        wait_until(lambda: len(_steps(db)) >= 3, timeout_s=TAKEOVER_S, what="a leader", poll_s=0.1)
        for _ in range(2):  # stop whoever leads; one of the rest follows
            leader = _steps(db)[-1]
            proc = hosts["abc".index(leader)]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
            wait_until(
                lambda leader=leader: _steps(db)[-1] != leader, timeout_s=TAKEOVER_S,
                what="a new leader", poll_s=0.1,
            )  # fmt: skip
        runs = _runs(_steps(db))
        assert len(runs) == 3
        assert len(set(runs)) == 3  # each led once, one after the other
    finally:
        for proc in hosts:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
