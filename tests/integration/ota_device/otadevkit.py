"""Fixtures for the device-updater tests: a real server with published releases, devices.

``ota_fleet`` (session): a running ``trustfleet server`` (HTTPS with the TUF routes, its
Mosquitto), releases built from simulated 1 MiB images and published with the real CLI:

* ``sim-v1`` 0.9.0 and 1.0.0, then a provisioned and enrolled *pristine* device (the factory
  installs 1.0.0 into slot a), then 2.0.0 (deltas from 1.0.0 and 0.9.0), 3.0.0 with
  ``--min-version 2.0.0``, and 4.0.0 whose boot signature is wrong but which is TUF-valid
  (published by a holder of the targets key who skipped the boot-signature check);
* ``other-v1`` 5.0.0 (no ``sim-v1`` release has that version).

``ota_fleet.device()`` copies the pristine device (same identity, its own token copy) so
every test starts from a device on 1.0.0; tests run one device at a time.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from support.agents import SIM_AGENT, boot_loop
from support.identities import mqtt_client_id
from support.scripts import run_script
from support.server import RunningServer, running_server
from support.tools import require_tools
from support.waiting import wait_for
from trustfleet.sim.process import ManagedProcess, free_port

AGENT = SIM_AGENT
IMAGE_BYTES = 1 << 20
RUN_TIMEOUT_S = 240

# A TUF-valid release whose boot signature does not verify: the staged manifest gets the
# signature of another image, and publish_release's boot-signature check is skipped, as an
# attacker holding the targets key (or a broken pipeline) would publish it.
_BAD_SIGNATURE_SCRIPT = r"""
import base64, json, sys
from datetime import UTC, datetime
from pathlib import Path
from trustfleet.services import _ota_release as rel
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings

a = json.loads(sys.argv[1])
rt = Runtime.open(load_server_settings(Path(a["home"])))
staged = Path(a["staged"]) / "release.json"
doc = json.loads(staged.read_text())
doc["boot"]["signature"] = a["signature"]
staged.write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")))
rel.verify_boot_signature = lambda *args, **kwargs: None
rel.publish_release(rt, model=a["model"], version=a["version"], now=datetime.now(UTC))
rt.close()
"""


class ServedFleet(Protocol):
    """What :class:`Mqtt` and :func:`agent_online` need: the running server and a work folder."""

    server: RunningServer
    work: Path


@dataclass
class OtaFleet:
    server: RunningServer
    work: Path
    images: dict[str, Path]
    pristine: Path
    copies: list[Path] = field(default_factory=list)

    def device(self, *, faults_file: bool = False) -> Path:
        """A copy of the pristine device (on 1.0.0, enrolled)."""
        folder = self.work / f"dev-{len(self.copies)}" / self.pristine.name
        shutil.copytree(self.pristine, folder, symlinks=True)
        conf = folder / "softhsm2.conf"
        conf.write_text(conf.read_text().replace(str(self.pristine), str(folder)))
        if faults_file:
            (folder / "faults.json").write_text(json.dumps({"health_check": "fail"}))
        self.copies.append(folder)
        return folder

    def target_file(self, path: str) -> Path:
        """A target's file in the server's repository (hashed name)."""
        folder, _, name = path.rpartition("/")
        (match,) = (self.server.home / "ota" / "repo" / "targets" / folder).glob(f"*.{name}")
        return match


def agent(
    *args: str | os.PathLike[str],
    env: dict[str, str] | None = None,
    timeout_s: float = RUN_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """Run the simulated ``trustfleet-agent ARGS`` (bounded; never raises on a non-zero exit)."""
    return subprocess.run(
        [*AGENT, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, **(env or {})},
        check=False,
    )


def assert_update(
    device: Path, version: str, *, code: int, outcome: str, firmware: str, slot: str
) -> dict[str, Any]:
    """``trustfleet-agent update`` to ``version`` ends with this exit code, outcome, firmware
    version and active slot; its report."""
    got, doc = update(device, version)
    assert (got, doc["outcome"], doc["firmware_version"], doc["slot"]) == (
        code,
        outcome,
        firmware,
        slot,
    ), doc
    return doc


def update(
    device: Path,
    version: str | None = None,
    *,
    env: dict[str, str] | None = None,
    faults: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """``trustfleet-agent update --json`` (with ``--faults``): (exit code, outcome or {})."""
    args: list[str] = ["update", "--device", str(device), "--json"]
    if version:
        args += ["--version", version]
    if faults:
        args += ["--faults", faults]
    proc = agent(*args, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    doc: dict[str, Any] = json.loads(lines[-1]) if lines else {"stderr": proc.stderr[-2000:]}
    return proc.returncode, doc


def trusted_state(device: Path) -> dict[str, Any]:
    """What an attack must not change: env, active slot manifest, floor and version."""
    env = json.loads((device / "bootenv.json").read_text())
    slot = env["boot_slot"]
    manifest = (device / "slots" / slot / "release.json").read_bytes()
    path = device / "ota-state.json"
    # Before the updater first runs, the floor is the booted release's version.
    booted = json.loads(manifest)["version"]
    state = json.loads(path.read_text()) if path.exists() else {}
    return {
        "env": env,
        "active_manifest": manifest,
        "active_image": (device / "slots" / slot / "image.bin").stat().st_size,
        "floor": state.get("floor", booted),
        "installed_version": state.get("installed_version", booted),
    }


def _release(
    server: RunningServer,
    image: Path,
    *,
    version: str,
    model: str = "sim-v1",
    min_version: str | None = None,
) -> None:
    args = ["release", "build", "--version", version, "--image", str(image), "--model", model]
    if min_version:
        args += ["--min-version", min_version]
    assert server.cli(*args).returncode == 0
    result = server.cli("release", "publish", "--version", version, "--model", model)
    assert result.returncode == 0, result.stderr


def _bad_signature_release(server: RunningServer, image: Path, other_manifest: bytes) -> None:
    version, model = "4.0.0", "sim-v1"
    assert (
        server.cli(
            "release", "build", "--version", version, "--image", str(image), "--model", model
        ).returncode
        == 0
    )
    signature = json.loads(other_manifest)["boot"]["signature"]
    args = {
        "home": str(server.home),
        "model": model,
        "version": version,
        "staged": str(server.home / "ota" / "staging" / model / version),
        "signature": signature,
    }
    run_script(_BAD_SIGNATURE_SCRIPT, args)
    assert base64.b64decode(signature)


def _provision(server: RunningServer, out: Path) -> Path:
    result = server.cli("factory", "provision", "--out", str(out), "--model", "sim-v1", "--json")
    assert result.returncode == 0, result.stderr
    device = Path(json.loads(result.stdout)["devices"][0]["directory"])
    first = agent("run", "--device", device, "--once", "--json")
    assert first.returncode == 0, first.stderr
    return device


@pytest.fixture(scope="session")
def ota_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OtaFleet]:
    require_tools("mosquitto", "softhsm2-util", hint="needed for the real broker and tokens")
    from trustfleet.sim.image import build_image

    base = tmp_path_factory.mktemp("otadev")
    work = base / "work"
    work.mkdir()
    images: dict[str, Path] = {}
    for model, version in [("sim-v1", v) for v in ("0.9.0", "1.0.0", "2.0.0", "3.0.0", "4.0.0")] + [
        ("other-v1", "5.0.0")
    ]:
        path = work / f"{model}-{version}.bin"
        build_image(path, version=version, size_bytes=IMAGE_BYTES, seed=model)
        images[f"{model}/{version}"] = path
    with running_server(base, settings={"attestation.enabled": "false"}) as server:
        _release(server, images["sim-v1/0.9.0"], version="0.9.0")
        _release(server, images["sim-v1/1.0.0"], version="1.0.0")
        pristine = _provision(server, work / f"pristine-{free_port()}")
        _release(server, images["sim-v1/2.0.0"], version="2.0.0")
        _release(server, images["sim-v1/3.0.0"], version="3.0.0", min_version="2.0.0")
        _release(server, images["other-v1/5.0.0"], version="5.0.0", model="other-v1")
        v1_manifest = (pristine / "slots" / "a" / "release.json").read_bytes()
        _bad_signature_release(server, images["sim-v1/4.0.0"], v1_manifest)
        yield OtaFleet(server=server, work=work, images=images, pristine=pristine)


class Mqtt:
    """The fleet service's side of MQTT: ``mosquitto_sub``/``mosquitto_pub`` as ``svc.ingest``.

    An MQTT client that shares no code with the agent.
    """

    def __init__(self, fleet: ServedFleet, device: Path) -> None:
        from support.identities import service_identity

        self.device_id = device.name
        self.port = int(
            re.search(r"^port = (\d+)", (device / "device.toml").read_text(), re.MULTILINE)[1]
        )  # type: ignore[index]
        work = fleet.work / f"svc-{secrets.token_hex(3)}"
        work.mkdir()
        self.identity = service_identity(fleet.server.home, work)
        self.ca = fleet.server.ca_bundle
        self.out = work / "messages.txt"
        # stdbuf: stdout is a file, so mosquitto_sub's stdio would hold lines in its buffer
        # (regression: a message "missing" for a minute was only unflushed).
        args = [
            "stdbuf",
            "-oL",
            "mosquitto_sub",
            *self._common(),
            "-t",
            f"tf/v1/d/{self.device_id}/#",
            "-F",
            "%t %p",
            "-i",
            mqtt_client_id(self.identity.name),
        ]
        self.sub = ManagedProcess(args, log=self.out, name="mosquitto_sub").start()

    def _common(self) -> list[str]:
        return [
            "-h",
            "localhost",
            "-p",
            str(self.port),
            "--cafile",
            str(self.ca),
            "--cert",
            str(self.identity.cert),
            "--key",
            str(self.identity.key),
            "--tls-version",
            "tlsv1.3",
            "-V",
            "mqttv5",
            "-q",
            "1",
        ]

    def send(self, payload: dict[str, Any], *, leaf: str = "cmd") -> None:
        topic = f"tf/v1/d/{self.device_id}/{leaf}"
        args = ["mosquitto_pub", *self._common(), "-t", topic, "-m", json.dumps(payload)]
        args += ["-i", mqtt_client_id(self.identity.name)]
        result = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 0, result.stderr

    def messages(self, leaf: str) -> list[dict[str, Any]]:
        found = []
        for line in self.out.read_text(errors="replace").splitlines():
            topic, _, payload = line.partition(" ")
            if topic.endswith("/" + leaf) and payload.startswith("{"):
                found.append(json.loads(payload))
        return found

    def wait_for(
        self, leaf: str, predicate: Callable[[dict[str, Any]], bool], *, timeout_s: float = 90
    ) -> dict[str, Any]:
        def first() -> dict[str, Any] | None:
            return next((m for m in self.messages(leaf) if predicate(m)), None)

        try:
            return wait_for(first, what=f"a {leaf} message", timeout_s=timeout_s, poll_s=0.2)
        except AssertionError:
            raise AssertionError(f"no {leaf} message matched; got {self.messages(leaf)}") from None

    def close(self) -> None:
        self.sub.stop(timeout_s=30)


class RunningAgent:
    """``trustfleet-agent run --device DIR`` (the boot loop) in its own session, started at
    once; :meth:`stop` SIGTERMs its group (SIGKILL after 60 s) and returns the exit code."""

    def __init__(self, device: Path) -> None:
        self.process = boot_loop(device, log=device / f"agent-{secrets.token_hex(3)}.log")

    def stop(self) -> int | None:
        return self.process.stop(timeout_s=60)


@contextmanager
def agent_online(fleet: ServedFleet, device: Path) -> Iterator[Mqtt]:
    """The device's boot loop running, watched over MQTT from the moment it announced its
    start; the agent is stopped and the watcher closed when the block ends."""
    mqtt = Mqtt(fleet, device)
    running = RunningAgent(device)
    try:
        mqtt.wait_for("events", lambda m: m.get("type") == "agent.started")
        yield mqtt
    finally:
        running.stop()
        mqtt.close()
