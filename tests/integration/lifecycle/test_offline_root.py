"""Issue 14 §1, an offline root: the root CA key and the TUF root keys live in tokens of an
offline folder whose PINs the home never holds; ``server run`` and every online path work
with that folder gone; ceremonies need it and a threshold of custodian PINs.

One home for the module (``server init`` through the CLI, the offline folder then moved away
to stand for the custodians' media), served by ``server run``.
"""

from __future__ import annotations

import base64
import json
import os
import pty
import select
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from support.server import (
    RunningServer,
    curl,
    enroll_software,
    init_home,
    make_csr_der,
    make_key,
    make_software_device,
    openssl,
    run_cli,
)
from trustfleet.errors import Unavailable
from trustfleet.sim.process import free_port
from trustfleet.sim.server import SimServer, console_script

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 180
ROOTS = ["tf-tuf-root-1", "tf-tuf-root-2", "tf-tuf-root-3"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    base = tmp_path_factory.mktemp("offline-root")
    home, port = base / "home", free_port()
    init_home(home, port=port)
    media = base / "custodians-media"  # the offline folder leaves the server's host
    (base / "home-offline").rename(media)
    sim = SimServer(
        home, api_port=port, log=base / "server.log", offline=media,
        pins_dir=base / "home-offline-pins",
    )  # fmt: skip
    sim.start(timeout_s=START_TIMEOUT_S)  # a shared, loaded CI machine: generous
    assert sim.process is not None and sim.process.proc is not None
    running = RunningServer(home=home, port=port, process=sim.process.proc, log=sim.log, sim=sim)
    try:
        yield running
    finally:
        running.close()
        sim.stop()


def _sim(server: RunningServer) -> SimServer:
    assert server.sim is not None
    return server.sim


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    return line


def _root_version(server: RunningServer) -> int:
    return int(server.cli_json("ota", "status")["roles"]["root"]["version"])


def test_the_home_holds_no_offline_pin_nor_token(server: RunningServer) -> None:
    sim = _sim(server)
    secrets = [path.read_text().strip() for path in sim.pins_dir.iterdir()]
    assert len(secrets) == 8  # a PIN and an SO-PIN for tf-root and each TUF root token
    for path in server.home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(pin.encode() in data for pin in secrets), path
    home_tokens = b"".join(p.read_bytes() for p in (server.home / "tokens").rglob("token.object"))
    offline_tokens = b"".join(p.read_bytes() for p in sim.offline.rglob("token.object"))
    assert b"tf-root" not in home_tokens and b"tf-tuf-root" not in home_tokens
    assert offline_tokens.count(b"tf-root") == 1 and offline_tokens.count(b"tf-tuf-root-") == 3
    assert stat.S_IMODE(sim.offline.stat().st_mode) == 0o700
    assert stat.S_IMODE((sim.offline / "tokens").stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in sim.pins_dir.iterdir()} == {0o600}


def _crl(server: RunningServer, ca: str, work: Path) -> x509.CertificateRevocationList:
    path = work / f"{ca}.crl"
    result = curl("--fail", "--cacert", server.ca_bundle, "-o", path,
                  f"{server.base_url}/crl/{ca}.crl")  # fmt: skip
    assert result.returncode == 0, result.stderr
    issuer = server.home / "public" / f"{ca}-ca.pem"
    openssl("crl", "-inform", "DER", "-in", path, "-noout", "-CAfile", issuer)  # verifies
    return x509.load_der_x509_crl(path.read_bytes())


def _ocsp(server: RunningServer, cert: Path, work: Path) -> str:
    issuer = server.home / "public" / "device-ca.pem"
    request, response = work / "ocsp.req", work / "ocsp.resp"
    openssl("ocsp", "-issuer", issuer, "-cert", cert, "-reqout", request)
    result = curl(
        "--fail", "--cacert", server.ca_bundle, "-H", "Content-Type: application/ocsp-request",
        "--data-binary", f"@{request}", "-o", response, f"{server.base_url}/ocsp",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = openssl(
        "ocsp", "-respin", response, "-no_nonce", "-CAfile", server.home / "public/root-ca.pem",
        "-VAfile", issuer, "-issuer", issuer, "-cert", cert,
    )  # fmt: skip
    return out.decode()


def test_online_paths_work_without_the_offline_folder(
    server: RunningServer, tmp_path: Path
) -> None:
    assert not (server.home.parent / "home-offline").exists()
    device = make_software_device(server, tmp_path)
    ldevid, key = enroll_software(server, device, tmp_path)
    assert f"{ldevid}: good" in _ocsp(server, ldevid, tmp_path)
    revoked = server.cli("device", "revoke", device.device_id, "--reason", "keyCompromise")
    assert revoked.returncode == 0, revoked.stderr
    assert f"{ldevid}: revoked" in _ocsp(server, ldevid, tmp_path)
    serial = x509.load_pem_x509_certificate(ldevid.read_bytes()).serial_number
    assert _crl(server, "device", tmp_path).get_revoked_certificate_by_serial_number(serial)
    root_crl = _crl(server, "root", tmp_path)  # served as stored, signed at init
    assert root_crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number >= 1
    body = base64.b64encode(make_csr_der(make_key(tmp_path / "again.key"), cn=device.device_id))
    assert server.est("simplereenroll", body, cert=ldevid, key=key).status_code == 403
    before = server.cli_json("ota", "status")["roles"]["timestamp"]["version"]
    after = server.cli_json("ota", "refresh-timestamp")["roles"]["timestamp"]["version"]
    assert after == before + 1
    with pytest.raises(Unavailable) as caught:
        server.runtime.issuer("root")
    assert caught.value.code == "ca.offline" and "run a ceremony" in caught.value.message
    status = {ca["name"]: ca for ca in server.cli_json("ca", "status")["cas"]}
    assert status["root"]["offline"] is True and status["device"]["offline"] is False
    assert status["device"]["crl_number"] >= 1 and status["root"]["state"] == "active"


def test_rotate_root_needs_the_threshold_of_custodians(
    server: RunningServer, tmp_path: Path
) -> None:
    sim = _sim(server)
    version = _root_version(server)
    # Regression (issue 14): with every PIN online, this moved the TUF root with no human step.
    blind = subprocess.run(
        [str(console_script("trustfleet")), "ota", "rotate-root", "--home", str(server.home),
         "--offline", str(sim.offline)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    line = _one_line(blind)
    assert "no terminal" in line and "--pin-file" in line
    one = server.cli("ota", "rotate-root", *sim.ceremony_args(["tf-tuf-root-2"]))
    line = _one_line(one)
    assert "1 of 3" in line and "tf-tuf-root-1, tf-tuf-root-3" in line
    wrong = tmp_path / "wrong.pin"
    wrong.write_text("not-the-pin\n")
    wrong.chmod(0o600)
    good = sim.pin_files(["tf-tuf-root-1"])["tf-tuf-root-1"]
    pins = ["--pin-file", f"tf-tuf-root-1={good}", "--pin-file", f"tf-tuf-root-2={wrong}"]
    bad = server.cli("ota", "rotate-root", "--offline", sim.offline, *pins)
    assert "token login failed for token 'tf-tuf-root-2'" in _one_line(bad)
    assert _root_version(server) == version  # nothing changed by the refusals
    two = server.cli_json(
        "ota", "rotate-root", *sim.ceremony_args(["tf-tuf-root-1", "tf-tuf-root-3"])
    )
    assert two["roles"]["root"]["version"] == version + 1
    (event,) = [e for e in _events(server) if e["type"] == "ceremony.rotate_root"]
    details = event["details"]
    assert details["custodians"] == ["tf-tuf-root-1", "tf-tuf-root-3"]
    assert details["kept"] == ["tf-tuf-root-2"] and details["root_version"] == version + 1
    assert details["operator"] and details["host"]


def _events(server: RunningServer) -> list[dict[str, Any]]:
    rt = server.runtime
    with rt.uow.begin(read_only=True) as tx:
        events = tx.events.list(type=("ceremony.rotate_root", "ceremony.crl_root"), limit=100)
        return [{"type": e.type, "details": dict(e.details)} for e in events]


def test_root_crl_is_resigned_in_a_ceremony(server: RunningServer, tmp_path: Path) -> None:
    sim = _sim(server)
    before = _crl(server, "root", tmp_path)
    number = before.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    missing = server.cli("ca", "crl-root", "--offline", tmp_path / "nowhere",
                         *sim.ceremony_args()[2:])  # fmt: skip
    assert "no offline folder" in _one_line(missing)
    signed = server.cli_json("ca", "crl-root", *sim.ceremony_args())
    assert signed["crl_number"] == number + 1
    served = _crl(server, "root", tmp_path)
    assert served.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == number + 1
    root = x509.load_pem_x509_certificate((server.home / "public/root-ca.pem").read_bytes())
    assert served.is_signature_valid(root.public_key())
    assert any(e["type"] == "ceremony.crl_root" for e in _events(server))


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("offline-not-empty", "not empty"),
        ("offline-in-home", "outside the server home"),
        ("pins-in-offline", "outside"),
    ],
    ids=["offline-not-empty", "offline-in-home", "pins-in-offline"],
)
def test_server_init_refuses_bad_offline_folders_and_leaves_nothing(
    tmp_path: Path, where: str, expected: str
) -> None:
    home = tmp_path / "h"
    args = ["server", "init", "--home", home, "--api-port", str(free_port())]
    if where == "offline-not-empty":
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "keep").write_text("x")
        args += ["--offline", tmp_path / "full"]
    elif where == "offline-in-home":
        args += ["--offline", home / "offline"]
    else:
        args += ["--offline", tmp_path / "o", "--pins-out", tmp_path / "o" / "pins"]
    line = _one_line(run_cli(*args))
    assert expected in line
    assert not home.exists() and not (tmp_path / "o").exists()
    if where == "offline-not-empty":
        assert (tmp_path / "full" / "keep").read_text() == "x"


def test_server_init_prints_each_pin_once_without_pins_out(tmp_path: Path) -> None:
    made = run_cli("server", "init", "--home", tmp_path / "h", "--api-port", str(free_port()),
                   "--json")  # fmt: skip
    assert made.returncode == 0, made.stderr
    pins = json.loads(made.stdout)["offline_pins"]
    assert sorted(pins) == sorted(
        f"{t}.{k}" for t in ["tf-root", *ROOTS] for k in ("pin", "so-pin")
    )
    assert (tmp_path / "h-offline" / "softhsm2.conf").is_file()
    for path in (tmp_path / "h").rglob("*"):
        if path.is_file():
            assert not any(pin.encode() in path.read_bytes() for pin in pins.values()), path


def test_server_init_failing_late_removes_the_offline_folder_too(tmp_path: Path) -> None:
    """The store is unreachable: the offline tokens were made already, and go with the rest."""
    url = f"postgresql+psycopg://u:p@127.0.0.1:{free_port()}/x"  # nothing listens there
    failed = run_cli("server", "init", "--home", tmp_path / "h", "--api-port", str(free_port()),
                     "--store-url", url, "--pins-out", tmp_path / "pins")  # fmt: skip
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    assert "database is unavailable" in failed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _answer_prompts(argv: list[str], answers: list[str], *, timeout_s: float = 120) -> str:
    """Run ``argv`` on a terminal (a pty as stdin), typing each answer after each PIN prompt
    (getpass flushes what was typed before it asks); its stdout."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.close(slave)
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout_s
    try:
        for answer in answers:
            seen = b""
            while not seen.endswith(b"absent): "):
                ready, _, _ = select.select([proc.stderr], [], [], deadline - time.monotonic())
                assert ready, f"no prompt within {timeout_s} s: {seen!r}"
                chunk = os.read(proc.stderr.fileno(), 4096)  # unbuffered: select sees the rest
                assert chunk, f"exited before the prompt: {seen!r}"
                seen += chunk
            os.write(master, answer.encode() + b"\n")
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()
    return out.decode()


def test_custodians_type_their_pins_at_a_prompt(server: RunningServer) -> None:
    sim = _sim(server)
    pins = {t: p.read_text().strip() for t, p in sim.pin_files().items()}
    argv = [str(console_script("trustfleet")), "ota", "rotate-root", "--home", str(server.home)]
    version = _root_version(server)
    out = _answer_prompts(
        [*argv, "--offline", str(sim.offline), "--json"],
        [pins["tf-tuf-root-1"], "", pins["tf-tuf-root-3"]],  # custodian 2 is absent
    )
    assert json.loads(out)["roles"]["root"]["version"] == version + 1
    assert not any(pin in out for pin in pins.values())  # never echoed
