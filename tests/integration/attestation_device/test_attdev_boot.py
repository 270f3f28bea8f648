"""The device's TPM power and its measured boot, against a real swtpm."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from attdevkit import MODEL, image_bytes

from support.waiting import eventually
from trustfleet.agent.platform import DeviceLayout
from trustfleet.agent.platform.faults import Faults
from trustfleet.agent.platform.measured_boot import (
    DeviceTpm,
    boot_events,
    measured_boot,
    recorded_pid,
)
from trustfleet.attestation import measure_identity, parse_eventlog, replay
from trustfleet.keystore.tpm import expected_pcrs
from trustfleet.services._attestation_policy import model_reference

BOOT_PCRS = (0, 4, 9, 10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    return stat.rsplit(b")", 1)[-1].split()[0] != b"Z"


def _boot(layout: DeviceLayout) -> tuple[dict[int, bytes], int]:
    device = DeviceTpm(layout.directory)
    device.power_on()
    with device.open() as tpm:
        glitch = Faults.for_simulation(layout.directory).boot_skip_verify  # the test seam
        measured_boot(layout.directory, tpm=tpm, env_store=layout.env_store(),
                      slots=layout.slots(), skip_verify=glitch)  # fmt: skip
        return tpm.pcr_read(BOOT_PCRS), tpm.clock().reset_count


def test_a_boot_measures_the_chain_the_service_expects(device: DeviceLayout) -> None:
    pcrs, _ = _boot(device)
    digest = hashlib.sha256(image_bytes("1.0.0")).digest()
    assert pcrs == expected_pcrs(boot_events(model=MODEL, image_sha256=digest))
    log = parse_eventlog(
        DeviceTpm(device.directory).eventlog(), max_entries=64, max_string_chars=256
    )
    assert [e.component for e in log] == ["rom", "bootloader", "image", "agent"]
    assert replay(log, pcrs=BOOT_PCRS) == pcrs
    # The digests are the per-model reference values the service publishes.
    reference = model_reference(MODEL)
    assert log[0].digest in reference.rom
    assert log[1].digest in reference.bootloader
    assert log[3].digest in reference.agent
    assert log[2].digest == digest
    assert measure_identity(f"trustfleet-sim-rom/{MODEL}/1") == log[0].digest


def test_reboot_resets_pcrs_and_counts_a_reset(device: DeviceLayout) -> None:
    first_pcrs, first_resets = _boot(device)
    first_pid = recorded_pid(DeviceTpm(device.directory).state_dir)
    assert first_pid is not None and _alive(first_pid)
    # A re-executed agent knows nothing but the pid file: a new power switch object.
    second_pcrs, second_resets = _boot(device)
    second_pid = recorded_pid(DeviceTpm(device.directory).state_dir)
    assert second_pcrs == first_pcrs  # same boot chain, PCRs reset and re-measured
    assert second_resets == first_resets + 1
    assert second_pid != first_pid and not _alive(first_pid)
    entries = json.loads(DeviceTpm(device.directory).eventlog_path.read_text())
    assert len(entries) == 4  # the log was emptied at power-on


def test_power_off_leaves_no_swtpm(device: DeviceLayout) -> None:
    _boot(device)
    tpm_dir = DeviceTpm(device.directory).state_dir
    pid = recorded_pid(tpm_dir)
    assert pid is not None
    DeviceTpm(device.directory).power().power_off()
    assert not _alive(pid)
    assert recorded_pid(tpm_dir) is None
    assert not (tpm_dir / "swtpm.pid").exists()


def test_a_stale_pid_file_never_signals_another_process(device: DeviceLayout) -> None:
    tpm_dir = DeviceTpm(device.directory).state_dir
    (tpm_dir / "swtpm.pid").write_text(f"{os.getpid()}\n")  # this test process: not a swtpm
    assert recorded_pid(tpm_dir) is None
    DeviceTpm(device.directory).power().power_off()  # must not signal us
    assert _alive(os.getpid())


def test_glitched_boot_runs_and_measures_a_tampered_image(device: DeviceLayout) -> None:
    image = device.slots().image_path("a")
    tampered = bytearray(image.read_bytes())
    tampered[100] ^= 0xFF
    image.write_bytes(bytes(tampered))
    (device.directory / "faults.json").write_text(json.dumps({"boot": "skip_verify"}))
    pcrs, _ = _boot(device)
    bad = hashlib.sha256(bytes(tampered)).digest()
    assert pcrs == expected_pcrs(boot_events(model=MODEL, image_sha256=bad))


def test_a_killed_agent_is_a_power_cut(device: DeviceLayout) -> None:
    import signal
    import subprocess
    import sys

    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from trustfleet.agent.platform.measured_boot import DeviceTpm\n"
        "DeviceTpm(Path(sys.argv[1])).power_on()\n"
        "print('on', flush=True)\n"
        "time.sleep(120)\n"
    )
    agent = subprocess.Popen(
        [sys.executable, "-c", script, str(device.directory)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert agent.stdout is not None and agent.stdout.readline().strip() == "on"
        pid = recorded_pid(DeviceTpm(device.directory).state_dir)
        assert pid is not None and _alive(pid)
    finally:
        agent.send_signal(signal.SIGKILL)
        agent.wait(30)
    eventually(lambda: not _alive(pid), timeout_s=10, poll_s=0.05)
    assert not _alive(pid)
    # The next boot powers the TPM on again (the stale pid file is ignored).
    pcrs, _ = _boot(device)
    assert set(pcrs) == set(BOOT_PCRS)
