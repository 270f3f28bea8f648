"""MtlsFetcher for real: HTTPS on loopback that requires a client certificate, the device key
inside a SoftHSM2 token used through awscrt (TLS 1.3), resume after a cut, Range honoured, a
200 instead of 206, oversized bodies refused, two awscrt contexts on one token at once.

The device side runs in a child process (``mtls_helper.py run``): awscrt initialises SoftHSM2
with the device's configuration there, and python-pkcs11 (used by ``setup`` in another child)
is never logged in to the token in that process.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tuf.api import exceptions
from tufrepo_kit import Behaviour, RepoState, SimRepo, serving, sha256_hex

from trustfleet.agent.updater.fetcher import HttpFetcher

pytestmark = pytest.mark.integration

tuf_served = tuple[str, RepoState]
HELPER = Path(__file__).with_name("mtls_helper.py")
IMAGE = "sim-v1/3.0.0/image.bin"
DATA = bytes(range(253)) * 2000  # ~500 kB
TIMEOUT_S = 120


@dataclass(frozen=True)
class Identity:
    work: Path
    module: str
    conf: str


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> Identity:
    if shutil.which("softhsm2-util") is None:
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2)")
    work = tmp_path_factory.mktemp("mtls")
    out = _child("setup", {"work": str(work)})
    info = json.loads(out[-1])
    return Identity(work, info["module"], info["conf"])


def _child(command: str, payload: dict[str, Any]) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(HELPER), command, json.dumps(payload)],
        capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.splitlines()


def device(identity: Identity, ops: list[dict[str, Any]], **limits: Any) -> list[dict[str, Any]]:
    """Run ``ops`` with an MtlsFetcher in a child process; one result per op."""
    payload = {
        "work": str(identity.work), "module": identity.module, "conf": identity.conf,
        "ops": ops, "limits": limits,
    }  # fmt: skip
    return [json.loads(line) for line in _child("run", payload)]


def _server_tls(identity: Identity) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(identity.work / "ca.pem")
    ctx.load_cert_chain(identity.work / "server.pem", identity.work / "server.key")
    return ctx


@pytest.fixture
def served(identity: Identity) -> Iterator[tuple[str, RepoState]]:
    repo = SimRepo()
    repo.add_target(IMAGE, DATA)
    repo.publish()
    with serving(repo, tls=_server_tls(identity)) as (url, state):
        yield url, state


def _target_url(url: str, state: RepoState) -> str:
    return f"{url}/{state.repo.target_url_path(IMAGE)}"


def test_tuf_client_refreshes_and_downloads_over_mutual_tls(
    identity: Identity, served: tuf_served
) -> None:
    url, state = served
    root = state.repo.root_bytes(1).hex()
    [result] = device(identity, [{"op": "tuf", "base": url, "root": root, "target": IMAGE}])
    assert result == {"sha256": sha256_hex(DATA)}
    paths = [s.path for s in state.seen]
    assert "metadata/timestamp.json" in paths and state.repo.target_url_path(IMAGE) in paths


def test_a_client_without_a_certificate_is_refused(identity: Identity, served: tuf_served) -> None:
    url, state = served
    fetcher = HttpFetcher(ca_file=identity.work / "ca.pem")
    with pytest.raises(exceptions.DownloadError):
        b"".join(fetcher.fetch_from(_target_url(url, state), 0))
    assert state.seen == []  # no request got past the handshake


def test_range_is_honoured_and_a_200_means_start_over(
    identity: Identity, served: tuf_served
) -> None:
    url, state = served
    target = _target_url(url, state)
    ranged, whole = device(
        identity,
        [
            {"op": "fetch", "url": target, "start": 1000},
            {"op": "fetch", "url": target + "?x", "start": 0},
        ],
    )
    assert ranged == {"start": 1000, "length": len(DATA) - 1000, "sha256": sha256_hex(DATA[1000:])}
    assert whole == {"start": 0, "length": len(DATA), "sha256": sha256_hex(DATA)}
    state.behaviour[state.repo.target_url_path(IMAGE)] = Behaviour(ignore_range=True)
    [ignored] = device(identity, [{"op": "fetch", "url": target, "start": 1000}])
    assert ignored == {"start": 0, "length": len(DATA), "sha256": sha256_hex(DATA)}
    assert [(s.range, s.status) for s in state.seen if s.path.endswith("image.bin")][-1] == (
        "bytes=1000-",
        200,
    )


def test_download_resumes_after_the_connection_is_cut(
    identity: Identity, served: tuf_served
) -> None:
    url, state = served
    path = state.repo.target_url_path(IMAGE)
    state.behaviour[path] = Behaviour(cut_after=150_000, cut_times=1)
    op = {"op": "download", "url": _target_url(url, state), "name": IMAGE, "dir": "dl-resume"}
    [result] = device(identity, [{**op, "length": len(DATA), "sha256": sha256_hex(DATA)}])
    assert result == {"sha256": sha256_hex(DATA)}
    requests = [(s.range, s.status) for s in state.seen if s.path == path]
    assert requests[0] == (None, 200) and requests[1][1] == 206 and len(requests) == 2
    resumed_at = int((requests[1][0] or "")[6:-1])
    assert 0 < resumed_at <= 150_000


@pytest.mark.parametrize(
    ("behaviour", "code"),
    [(Behaviour(endless=True), "ota.tuf.length"), (Behaviour(body=DATA + b"x"), "ota.tuf.length")],
    ids=["endless", "longer-than-listed"],
)
def test_oversized_bodies_are_refused(
    identity: Identity, served: tuf_served, behaviour: Behaviour, code: str
) -> None:
    url, state = served
    state.behaviour[state.repo.target_url_path(IMAGE)] = behaviour
    directory = f"dl-{code}-{behaviour.endless}"
    op = {"op": "download", "url": _target_url(url, state), "name": IMAGE, "dir": directory}
    [result] = device(identity, [{**op, "length": len(DATA), "sha256": sha256_hex(DATA)}])
    assert result == {"error": "VerificationFailed", "code": code}
    assert list((identity.work / directory).iterdir()) == []  # nothing kept


def test_the_fetcher_caps_any_body(identity: Identity, served: tuf_served) -> None:
    url, state = served
    ops = [{"op": "fetch", "url": _target_url(url, state), "start": 0}]
    [result] = device(identity, ops, max_body_bytes=100_000)
    assert result["error"] == "DownloadLengthMismatchError"


def test_two_awscrt_contexts_on_one_token_work_at_once(
    identity: Identity, served: tuf_served
) -> None:
    url, state = served
    op = {"op": "two_contexts", "url": _target_url(url, state), "rounds": 4}
    [result] = device(identity, [op])
    assert result == {"digests": [sha256_hex(DATA)], "count": 8, "errors": []}


def test_the_fetcher_refuses_plain_http(identity: Identity) -> None:
    [result] = device(identity, [{"op": "fetch", "url": "http://127.0.0.1:9/x", "start": 0}])
    assert result == {"error": "InvalidInput", "code": None}
