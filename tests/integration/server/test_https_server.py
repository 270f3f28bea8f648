"""Issue 9 §3 against a real ``trustfleet server run``: routes, refusals and a large target.

Clients: httpx (Python ``ssl``), raw TLS sockets and curl. The home's refusal window is 2 s so
that a flood's summary event is written while the test waits for it (bounded).
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.httpsprobe import listening_pids, pipeline_unread, raw_exchange, rss_bytes
from support.server import (
    RunningServer,
    SoftwareDevice,
    curl,
    make_software_device,
    running_server,
)
from trustfleet.errors import Unavailable
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings
from trustfleet.sim.process import wait_until

pytestmark = pytest.mark.integration

WINDOW_S = 2.0
BURST = 5
TARGET = "abuse/big.bin"
TARGET_BYTES = 32 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    base = tmp_path_factory.mktemp("https-server")
    settings = {"api.refusal_window_s": str(WINDOW_S), "api.refusal_burst": str(BURST)}
    with running_server(base, settings=settings) as srv:
        target = srv.home / "ota" / "repo" / "targets" / TARGET
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            out.truncate(TARGET_BYTES)
        yield srv


@pytest.fixture(scope="module")
def device(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> SoftwareDevice:
    """A manufactured device: an IDevID and nothing else."""
    return make_software_device(server, tmp_path_factory.mktemp("device"))


def _client(
    server: RunningServer, device: SoftwareDevice | None = None, *, source: str | None = None
) -> httpx.Client:
    cert = (device.idevid, device.key) if device else (None, None)
    transport = httpx.HTTPTransport(
        verify=server.ssl_context(cert=cert[0], key=cert[1]), local_address=source
    )
    return httpx.Client(transport=transport, base_url=server.base_url, timeout=30)


# -- finding 4: HEAD, CL + TE, redirects -----------------------------------------------------

GET_ROUTES = {
    "healthz": ("/healthz", False),
    "est-cacerts": ("/.well-known/est/cacerts", False),
    "crl": ("/crl/device.crl", False),
    "tuf-metadata-without-cert": ("/tuf/metadata/timestamp.json", False),
    "tuf-metadata": ("/tuf/metadata/timestamp.json", True),
    "tuf-target": (f"/tuf/targets/{TARGET}", True),
    "no-such-route": ("/nothing-here", False),
}


@pytest.mark.parametrize(("path", "with_cert"), list(GET_ROUTES.values()), ids=list(GET_ROUTES))
def test_head_answers_like_get_without_a_body(
    server: RunningServer, device: SoftwareDevice, path: str, with_cert: bool
) -> None:
    """Found: ``HEAD /healthz`` got no answer and logged a 3.5 KB traceback."""
    with _client(server, device if with_cert else None) as client:
        head = client.head(path)
        with client.stream("GET", path) as get:
            get_headers = get.headers
    assert head.status_code == get.status_code
    assert head.content == b""
    for name in ("content-type", "content-length", "x-trustfleet-error"):
        assert head.headers.get(name) == get_headers.get(name), name
    assert "Traceback" not in server.log.read_text(errors="replace")


def test_head_with_curl(server: RunningServer) -> None:
    result = curl("--head", "--cacert", server.ca_bundle, f"{server.base_url}/healthz")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"HTTP/1.1 200")
    assert b"content-length: 2" in result.stdout.lower()  # "ok"


def _raw(server: RunningServer, payload: bytes) -> bytes:
    return raw_exchange(server.ssl_context(), server.port, payload, read_s=10)


def test_content_length_with_chunked_is_refused(server: RunningServer) -> None:
    """Found: a request with both Content-Length and Transfer-Encoding was accepted."""
    body = b"4\r\nAAAA\r\n0\r\n\r\n"
    raw = _raw(
        server,
        b"POST /.well-known/est/simpleenroll HTTP/1.1\r\nhost: localhost\r\n"
        b"content-type: application/pkcs10\r\ncontent-length: 4\r\n"
        b"transfer-encoding: chunked\r\n\r\n" + body,
    )
    assert raw.startswith(b"HTTP/1.1 400 "), raw[:200]


SLASHED = [
    "/healthz/",
    "/.well-known/est/cacerts/",
    "/crl/device.crl/",
    "/tuf/metadata/1.root.json/",
]


@pytest.mark.parametrize("path", SLASHED, ids=SLASHED)
def test_no_redirect_echoes_the_host_header(server: RunningServer, path: str) -> None:
    """Found: ``/healthz/`` was redirected to ``https://<Host header>/healthz``."""
    with _client(server) as client:
        response = client.get(path, headers={"host": "evil.example"})
    assert response.status_code == 404
    assert "location" not in response.headers


# -- finding 3: refusals of unauthenticated clients ------------------------------------------


def _refusals_since(server: RunningServer, last_id: int) -> list[Any]:
    with server.runtime.uow.begin() as tx:
        events = tx.events.list(after_id=last_id, limit=1000)
    return [e for e in events if e.type == "enrollment.refused"]


def _wait_for_summary(server: RunningServer, last_id: int, count: int) -> list[Any]:
    """The refusals written since ``last_id`` once one summary is among them (bounded wait)."""
    events: list[Any] = []

    def summarised() -> bool:
        events[:] = _refusals_since(server, last_id)
        return any(e.details.get("aggregated") for e in events)

    with contextlib.suppress(Unavailable):  # the assertions then say what is missing
        wait_until(summarised, timeout_s=10 * WINDOW_S + 10, what="a summary", poll_s=0.2)
    return events


@dataclass(frozen=True)
class Flood:
    source: str
    with_cert: bool
    status: int
    code: str


FLOODS = {
    # Found: 500 anonymous bad simpleenroll requests wrote 500 undeletable rows in 0.5 s.
    "anonymous-no-certificate": Flood("127.0.0.2", False, 403, "est.auth.missing"),
    "device-with-garbage-csrs": Flood("127.0.0.3", True, 400, "est.body.not_csr"),
}
FLOOD_REQUESTS = 60


@pytest.mark.parametrize("flood", list(FLOODS.values()), ids=list(FLOODS))
def test_a_refusal_flood_writes_a_bounded_number_of_events_with_counts(
    server: RunningServer, tmp_path: Path, flood: Flood
) -> None:
    source, with_cert, status, code = flood.source, flood.with_cert, flood.status, flood.code
    flooder = make_software_device(server, tmp_path) if with_cert else None
    before = server.snapshot().last_event_id
    body = base64.b64encode(b"\x30\x03\x02\x01\x00")  # DER, but no CSR
    with _client(server, flooder, source=source) as client:
        for _ in range(FLOOD_REQUESTS):
            response = client.post(
                "/.well-known/est/simpleenroll",
                content=body,
                headers={"content-type": "application/pkcs10"},
            )
            assert response.status_code == status, response.text
            assert response.headers["x-trustfleet-error"] == code

    events = _wait_for_summary(server, before, FLOOD_REQUESTS)
    assert len(events) == BURST + 1
    single, summary = events[:BURST], events[BURST]
    assert all(e.details["code"] == code and "aggregated" not in e.details for e in single)
    assert summary.details["aggregated"] is True
    assert summary.details["code"] == code
    assert summary.details["count"] == FLOOD_REQUESTS - BURST
    if flooder is None:
        assert {e.details["source"] for e in events} == {source}
        assert {e.actor for e in events} == {"anonymous"}
    else:
        assert {e.subject for e in events} == {f"device:{flooder.device_id}"}


def test_another_source_is_not_silenced_by_a_flood(server: RunningServer) -> None:
    before = server.snapshot().last_event_id
    for source in ("127.0.0.4", "127.0.0.4", "127.0.0.5"):
        with _client(server, source=source) as client:
            response = client.post("/.well-known/est/simpleenroll", content=b"x")
        assert response.status_code == 403
    events = _refusals_since(server, before)
    assert [e.details["source"] for e in events] == ["127.0.0.4", "127.0.0.4", "127.0.0.5"]


# -- finding 1: a large target, requested and not read -----------------------------------------


def test_unread_target_with_pipelined_requests_keeps_the_worker_small(
    server: RunningServer, device: SoftwareDevice
) -> None:
    """Found: with an IDevID, one client grew a worker from 112 to 410 MiB in 0.5 s."""
    (worker,) = listening_pids(server.port)
    before = rss_bytes(worker)
    grown = 0

    def measure() -> None:
        nonlocal grown
        grown = rss_bytes(worker) - before

    pushed = pipeline_unread(
        server.ssl_context(cert=device.idevid, key=device.key),
        server.port,
        path=f"/tuf/targets/{TARGET}",
        max_bytes=256 << 20,
        before_close=measure,
    )
    assert pushed < 32 << 20, f"the worker took {pushed >> 20} MiB of requests it cannot answer"
    assert grown < 64 << 20, f"the worker grew by {grown >> 20} MiB"


def test_open_windows_are_summarised_when_the_server_stops(tmp_path: Path) -> None:
    """The worker's shutdown (ASGI lifespan) writes the counts of windows still open."""
    settings = {"api.refusal_window_s": "3600.0", "api.refusal_burst": "2"}
    with running_server(tmp_path, settings=settings) as srv:
        before = srv.snapshot().last_event_id
        with _client(srv, source="127.0.0.6") as client:
            for _ in range(12):
                assert client.post("/.well-known/est/simpleenroll", content=b"x").status_code == 403
        assert len(_refusals_since(srv, before)) == 2
        home = srv.home
    rt = Runtime.open(load_server_settings(home))
    try:
        with rt.uow.begin(read_only=True) as tx:
            events = [
                e
                for e in tx.events.list(after_id=before, limit=1000)
                if e.type == "enrollment.refused"
            ]
    finally:
        rt.close()
    assert [e.details.get("count", 1) for e in events] == [1, 1, 10]
    assert events[-1].details["aggregated"] is True
