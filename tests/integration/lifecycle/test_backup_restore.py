"""Back up a running server, restore it into a new folder, serve the same fleet from there.

One module-scoped fleet (4 devices enrolled and publishing, one revoked, a release published
on top of the factory one) is backed up while it runs, stopped, restored into a new folder and
served from there on the same ports: a device reconnects and publishes (its LDevID verifies
against the restored CA), the revoked one stays refused (OCSP, CRL, TLS), another device
installs the release (TUF metadata verifies), and the audit log verifies.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from trustfleet.errors import Conflict, VerificationFailed
from trustfleet.services.ota import build_release, publish_release
from trustfleet.services.restore import restore_backup
from trustfleet.services.revocation import revoke_device
from trustfleet.sim.fleet import SimFleet, utc_now
from trustfleet.sim.image import build_image
from trustfleet.sim.scenarios import DEMO
from trustfleet.sim.server import SimServer, console_script
from trustfleet.store import head_revision, schema_revision

SETUP_STAGES = ("init", "release", "provision", "serve", "enroll", "telemetry")
V2 = "1.1.0"
IMAGE_BYTES = 8 * 1024 * 1024  # the demo's lineage and size
AGENT_TIMEOUT_S = 120.0
CLI_TIMEOUT_S = 180.0
PASSPHRASE = "restore drill: four long words"
START_TIMEOUT_S = 180.0  # a loaded 2-core CI host: the stages' own bound is 60 s


@dataclass
class Restored:
    fleet: SimFleet
    backup: Path
    passphrase: Path
    home: Path
    revoked_cert: object
    backup_doc: dict[str, object]


def _tf(*args: str | Path) -> subprocess.CompletedProcess[str]:
    argv = [str(console_script("trustfleet")), *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False)


def _stop_server_and_agents(fleet: SimFleet) -> None:
    for agent in fleet.agents.values():
        agent.stop()
    fleet.srv.stop()


def _publish_v2(fleet: SimFleet) -> None:
    image = fleet.workdir / f"image-{V2}.bin"
    build_image(image, version=V2, size_bytes=IMAGE_BYTES, seed=fleet.model)
    rt = fleet.srv.runtime
    build_release(rt, image=image, version=V2, model=fleet.model, min_version=None, now=utc_now())
    publish_release(rt, model=fleet.model, version=V2, now=utc_now())
    image.unlink()


@pytest.fixture(scope="module")
def restored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Restored]:
    """The fleet, backed up while serving, then served from a restored home."""
    work = tmp_path_factory.mktemp("backup-restore")
    fleet = SimFleet(work, size=4)
    stages = {stage.name: stage for stage in DEMO}
    try:
        for name in SETUP_STAGES:
            result = stages[name](fleet)
            assert result.ok, f"setup stage {name} failed: {result.to_json()}"
        _publish_v2(fleet)
        victim = fleet.agent("revoked")
        cert = victim.ldevid()
        now = utc_now()
        revoke_device(fleet.srv.runtime, victim.device_id, reason="keyCompromise",
                      actor="operator:test", now=now)  # fmt: skip
        fleet.srv.close_runtime()
        passphrase = work / "passphrase"
        passphrase.write_text(PASSPHRASE + "\n")
        passphrase.chmod(0o600)
        out = work / "fleet.tfbackup"
        made = fleet.srv.cli("server", "backup", "--out", out, "--passphrase-file", passphrase,
                             "--json", timeout_s=CLI_TIMEOUT_S)  # fmt: skip  # while it serves
        assert made.returncode == 0, made.stderr
        _stop_server_and_agents(fleet)  # the witness keeps running
        home = work / "restored"
        done = _tf("server", "restore", out, "--home", home, "--passphrase-file", passphrase)
        assert done.returncode == 0, done.stderr
        fleet.server = SimServer(home, log=work / "restored.log").start(timeout_s=START_TIMEOUT_S)
        yield Restored(fleet, out, passphrase, home, cert, json.loads(made.stdout))
    finally:
        fleet.stop()


def test_the_backup_file_is_private_and_encrypted(restored: Restored) -> None:
    assert restored.backup.stat().st_mode & 0o777 == 0o600
    data = restored.backup.read_bytes()
    assert data.startswith(b"TFBACKUP")
    assert b"tf-service" not in data and b"BEGIN CERTIFICATE" not in data  # nothing in the clear
    assert restored.backup_doc["encryption"] == "scrypt"
    assert restored.backup_doc["schema_revision"] == head_revision()


def test_modes_and_paths_of_the_restored_home(restored: Restored) -> None:
    home = restored.home
    for folder, mode in (("secrets", 0o700), ("tokens", 0o700), ("db", 0o700), ("public", 0o755)):
        assert (home / folder).stat().st_mode & 0o777 == mode, folder
    for pin in (home / "secrets").glob("*.pin"):
        assert pin.stat().st_mode & 0o777 == 0o600
    conf = (home / "tokens" / "softhsm2.conf").read_text()
    assert f"directories.tokendir = {home.resolve()}/tokens/store" in conf
    assert str(restored.fleet.workdir / "server") not in (home / "trustfleet.toml").read_text()


def test_a_device_reconnects_and_publishes(restored: Restored) -> None:
    fleet = restored.fleet
    device = fleet.device("reenroller")
    before = fleet.telemetry_counts()
    fleet.agent(device).start()
    fleet.wait_telemetry([device], rows=2, since=before, timeout_s=AGENT_TIMEOUT_S)


def test_the_revoked_device_stays_refused(restored: Restored) -> None:
    fleet = restored.fleet
    cert = restored.revoked_cert
    assert fleet.ocsp_status(cert) == "REVOKED"  # type: ignore[arg-type]
    assert fleet.crl_lists(cert.serial_number)  # type: ignore[attr-defined]
    assert fleet.agent("revoked").run_once().returncode != 0


def test_the_release_is_still_served_and_verifies(restored: Restored) -> None:
    agent = restored.fleet.agent("rollback")  # not running: its folder is free for an update
    proc = _tf("agent", "update", "--device", agent.directory, "--sim", "--version", V2, "--json")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    outcomes = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert outcomes and outcomes[-1].get("outcome") == "committed", proc.stdout[-2000:]
    assert V2 in proc.stdout


def test_the_audit_log_verifies(restored: Restored) -> None:
    proc = _tf("audit", "verify", "--home", restored.home)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_server_check_lists_the_restored_home(restored: Restored) -> None:
    proc = _tf("server", "check", "--home", restored.home, "--json")
    assert proc.returncode == 0, proc.stderr
    subjects = {item["subject"] for item in json.loads(proc.stdout)["items"]}
    assert {"cert:root", "cert:device", "tls:api", "tls:broker", "tuf:timestamp"} <= subjects
    assert "crl:device" in subjects  # the revocation issued one


def _tampered(source: Path, tmp_path: Path) -> Path:
    data = bytearray(source.read_bytes())
    data[len(data) // 2] ^= 1
    out = tmp_path / "tampered.tfbackup"
    out.write_bytes(bytes(data))
    return out


def test_a_refused_restore_is_one_line_and_leaves_nothing(
    restored: Restored, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase at all\n")
    target = tmp_path / "home"
    proc = _tf("server", "restore", restored.backup, "--home", target, "--passphrase-file", wrong)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: wrong passphrase"), proc.stderr
    assert not target.exists()


@pytest.mark.parametrize("how", ["wrong-passphrase", "tampered", "not-empty"])
def test_refused_restores_leave_nothing(restored: Restored, tmp_path: Path, how: str) -> None:
    source, passphrase, target = restored.backup, PASSPHRASE.encode(), tmp_path / "home"
    if how == "wrong-passphrase":
        passphrase = b"not the passphrase at all"
    elif how == "tampered":
        source = _tampered(source, tmp_path)
    else:
        target.mkdir()
        (target / "keep").write_text("mine")
    with pytest.raises((VerificationFailed, Conflict)):
        restore_backup(source, home=target, passphrase=passphrase, now=utc_now())
    if how == "not-empty":
        assert sorted(p.name for p in target.iterdir()) == ["keep"]
    else:
        assert not target.exists()


def test_a_backup_to_a_recipient_key_restores_with_its_identity(
    restored: Restored, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    identity = X25519PrivateKey.generate()
    key_file, pub_file = tmp_path / "id.pem", tmp_path / "id.pub"
    key_file.write_bytes(identity.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))  # fmt: skip
    pub_file.write_bytes(identity.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ))  # fmt: skip
    out = tmp_path / "to-recipient.tfbackup"
    made = _tf("server", "backup", "--home", restored.home, "--out", out, "--recipient", pub_file,
               "--json")  # fmt: skip  # the restored server serves meanwhile
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["encryption"] == "x25519"
    home = tmp_path / "again"
    done = _tf("server", "restore", out, "--home", home, "--identity", key_file, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["source_home"] == str(restored.home.resolve())
    assert (home / "trustfleet.toml").is_file()


# --- upgrades -------------------------------------------------------------------------------


def _downgrade(home: Path, revision: str) -> None:
    from alembic import command

    from trustfleet.settings import load_server_settings
    from trustfleet.store import create_engine
    from trustfleet.store._engine import alembic_config

    engine = create_engine(load_server_settings(home).store_url())
    try:
        config = alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, revision)
        assert schema_revision(engine) == revision
    finally:
        engine.dispose()


# --- the expiry watch on a real home ----------------------------------------------------------


def test_the_expiry_watch_raises_each_notice_once(restored: Restored) -> None:
    from datetime import timedelta

    from trustfleet.services.expiry import collect_expiries, watch_expiries
    from trustfleet.services.runtime import Runtime
    from trustfleet.settings import load_server_settings
    from trustfleet.settings.monitoring import SyslogSettings

    settings = load_server_settings(restored.home)
    receiver = SyslogSettings(name="ops", port=9)  # queued only: monitor#0 delivers
    monitoring = settings.monitoring.model_copy(update={"syslog": [receiver]})
    rt = Runtime.open(settings.model_copy(update={"monitoring": monitoring}))
    later = utc_now() + timedelta(days=400)  # past the TLS certificates (397 days)
    try:
        levels = {i.subject: i.level for i in collect_expiries(rt, now=later)}
        assert levels["tls:api"] == "expired" and levels["tuf:timestamp"] == "expired"
        assert levels["cert:root"] == "ok"
        assert levels["devices:ldevid"] == "expired"  # LDevIDs are valid 30 days
        raised = watch_expiries(rt, now=later)
        assert {i.subject for i in raised} == {s for s, level in levels.items() if level != "ok"}
        assert watch_expiries(rt, now=later) == []  # once per subject and level
        with rt.uow.begin(read_only=True) as tx:
            events = tx.events.list(type="lifecycle.expiry", limit=100)
            queued = [n for n in tx.notifications.due(now=later) if n.alert_id is None]
        assert len(events) == len(raised)
        assert {json.loads(n.payload)["kind"] for n in queued} == {"lifecycle.expiry"}
        assert len(queued) == len(raised)
    finally:
        rt.close()


def test_server_run_upgrades_a_home_of_the_previous_schema(restored: Restored) -> None:
    """The last test of the module: the restored home, taken back to schema 0009, restarted."""
    fleet, server = restored.fleet, restored.fleet.srv
    states = fleet.device_states()
    _stop_server_and_agents(fleet)
    _downgrade(server.home, "0009")
    server.start(timeout_s=START_TIMEOUT_S)
    rt = server.runtime
    assert schema_revision(rt.engine) == head_revision()
    copies = list((server.home / "backups").glob("pre-migrate-0009-*"))
    assert len(copies) == 1
    assert copies[0].stat().st_mode & 0o777 == 0o700
    assert (copies[0] / "trustfleet.sqlite3").stat().st_mode & 0o777 == 0o600
    assert fleet.device_states() == states
    with rt.uow.begin(read_only=True) as tx:
        assert [ca.name for ca in tx.cas.trusted("device")] == ["device"]
        migrated = tx.events.list(type="store.migrated", limit=10)
    head = head_revision()  # the newest migration, not a number written here
    assert [(e.details["from"], e.details["to"]) for e in migrated] == [("0009", head)]
    assert f"store migrated from schema 0009 to {head}" in server.log.read_text()
