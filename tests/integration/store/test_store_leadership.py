"""Leadership of singleton roles through PostgreSQL advisory locks (ADR 0023), on a real server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

from support.postgres import PostgresCluster, restart, running_cluster
from trustfleet.sim.process import wait_until
from trustfleet.store import Leadership, create_engine, role_holders, sqlite_url

pytestmark = [pytest.mark.integration]

TAKEOVER_S = 10.0  # the bound for another host to take a singleton over


@pytest.fixture
def engines(postgres_db_url: str) -> Iterator[list[sqlalchemy.Engine]]:
    made = [create_engine(postgres_db_url) for _ in range(3)]
    yield made
    for engine in made:
        engine.dispose()


@pytest.mark.postgres
def test_one_holder_per_role_and_release_hands_it_on(engines: list[sqlalchemy.Engine]) -> None:
    a, b, c = (Leadership(e, "campaigns", holder=n) for e, n in zip(engines, "abc", strict=True))
    other_role = Leadership(engines[1], "audit", holder="b")
    try:
        assert a.held()
        assert not b.held()
        assert not c.held()
        assert a.held()  # still ours at the next check
        assert other_role.held()  # roles are independent
        assert role_holders(engines[2]) == {"campaigns": "a", "audit": "b"}
        a.release()
        assert b.held() != c.held()  # exactly one of the others takes it
        assert not a.held()
    finally:
        for lead in (a, b, c, other_role):
            lead.release()
    assert role_holders(engines[0]) == {}


@pytest.mark.postgres
def test_a_terminated_session_loses_the_lead_and_another_takes_it(
    engines: list[sqlalchemy.Engine],
) -> None:
    a, b = Leadership(engines[0], "attestation", holder="a"), Leadership(engines[1], "attestation")
    try:
        assert a.held()
        assert not b.held()
        with engines[2].connect() as admin:  # what a host cut off looks like to PostgreSQL
            admin.execute(
                sqlalchemy.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name LIKE 'trustfleet-lead attestation a%'"
                )
            )
        wait_until(b.held, timeout_s=TAKEOVER_S, what="b to take the lead", poll_s=0.2)
        assert not a.held()  # a noticed its session ended, and does not get it back
    finally:
        a.release()
        b.release()


_HOLDER = """
import sys, time
from trustfleet.store import Leadership, create_engine
lead = Leadership(create_engine(sys.argv[1]), "campaigns", holder="doomed")
assert lead.held()
print("leading", flush=True)
time.sleep(600)
"""


@pytest.mark.postgres
def test_a_killed_leader_is_replaced(
    postgres_db_url: str, engines: list[sqlalchemy.Engine]
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, postgres_db_url],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "leading"
        follower = Leadership(engines[0], "campaigns", holder="follower")
        assert not follower.held()
        assert role_holders(engines[1]) == {"campaigns": "doomed"}
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        wait_until(follower.held, timeout_s=TAKEOVER_S, what="the follower to lead", poll_s=0.2)
        assert role_holders(engines[1]) == {"campaigns": "follower"}
        follower.release()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.postgres
def test_leadership_survives_a_postgresql_restart() -> None:
    cluster: PostgresCluster
    with running_cluster() as cluster:
        engine = create_engine(cluster.url)
        other = create_engine(cluster.url)
        try:
            a, b = Leadership(engine, "monitor", holder="a"), Leadership(other, "monitor")
            assert a.held()
            restart(cluster)  # every session ends, every advisory lock with it
            assert not a.held()  # noticed, without raising
            wait_until(
                lambda: a.held() or b.held(), timeout_s=TAKEOVER_S, what="a new leader",
                poll_s=0.2,
            )  # fmt: skip
            assert a.held() != b.held()
            a.release()
            b.release()
        finally:
            engine.dispose()
            other.dispose()


def test_sqlite_has_one_server_which_always_leads(tmp_path: Path) -> None:
    engine = create_engine(sqlite_url(tmp_path / "one.db"))
    try:
        lead = Leadership(engine, "campaigns")
        assert not lead.shared
        assert lead.held()
        assert role_holders(engine) == {}
        lead.release()
        assert lead.held()
    finally:
        engine.dispose()


@pytest.mark.parametrize("role", ["", "x" * 25], ids=["empty", "too-long"])
def test_role_names_are_bounded(tmp_path: Path, role: str) -> None:
    engine = create_engine(sqlite_url(tmp_path / "one.db"))
    try:
        with pytest.raises(ValueError, match="1 to 24 characters"):
            Leadership(engine, role)
    finally:
        engine.dispose()
