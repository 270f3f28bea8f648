"""swtpm per device: manufacture, start, stop by process group, restart, bad states."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest
from tpm_support import live_processes_mentioning

from support.swtpm import clone_state
from trustfleet.errors import Config, Conflict, InvalidInput, NotFound, Unavailable
from trustfleet.keystore.tpm import ManufacturerCa, SwtpmInstance, Tpm


def test_lifecycle_leaves_no_process_and_no_socket(tmp_path: Path, manufactured_tpm: Path) -> None:
    state = clone_state(manufactured_tpm, tmp_path / "tpm")
    instance = SwtpmInstance(state)
    with instance:
        pid = instance.pid
        assert pid is not None
        assert os.getpgid(pid) == pid  # its own process group
        assert live_processes_mentioning(str(state)) == [pid]
        assert instance.socket_path.is_socket()
        assert instance.tools_env() == {"TPM2TOOLS_TCTI": f"swtpm:path={instance.socket_path}"}
        with Tpm(tcti=instance.tcti) as tpm:
            assert tpm.clock().reset_count >= 0
    assert instance.pid is None
    assert live_processes_mentioning(str(state)) == []
    assert not instance.socket_path.exists()
    assert not Path(f"{instance.socket_path}.ctrl").exists()


def test_restart_keeps_the_ak_and_counts_a_reset(tmp_path: Path, manufactured_tpm: Path) -> None:
    instance = SwtpmInstance(clone_state(manufactured_tpm, tmp_path / "tpm"))
    with instance, Tpm(tcti=instance.tcti) as tpm:
        ak = tpm.create_ak()
        resets = tpm.clock().reset_count
    with instance, Tpm(tcti=instance.tcti) as tpm:
        assert tpm.ak() == ak
        assert tpm.clock().reset_count == resets + 1


def test_stop_kills_a_swtpm_that_ignores_sigterm(tmp_path: Path, manufactured_tpm: Path) -> None:
    state = clone_state(manufactured_tpm, tmp_path / "tpm")
    instance = SwtpmInstance(state, stop_timeout_s=0.3)
    instance.start()
    pid = instance.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # a stopped process does not act on SIGTERM
    instance.stop()
    assert live_processes_mentioning(str(state)) == []


def test_start_after_a_crash_replaces_stale_sockets(tmp_path: Path, manufactured_tpm: Path) -> None:
    instance = SwtpmInstance(clone_state(manufactured_tpm, tmp_path / "tpm"))
    instance.start()
    pid = instance.pid
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)  # our own child's group
    os.waitpid(pid, 0)
    assert instance.socket_path.exists()  # left behind
    restarted = SwtpmInstance(instance.state_dir)
    with restarted, Tpm(tcti=restarted.tcti) as tpm:
        assert tpm.pcr_read([0])[0] == bytes(32)
    instance.stop()  # nothing left to stop; must not fail


def test_a_second_swtpm_on_the_same_state_is_refused(swtpm: SwtpmInstance) -> None:
    with pytest.raises(Conflict) as err:
        SwtpmInstance(swtpm.state_dir).start()
    assert err.value.code == "tpm.swtpm.running"
    with pytest.raises(InvalidInput):
        swtpm.start()


def test_manufacturing_needs_a_vendor_ca(tmp_path: Path) -> None:
    with pytest.raises(Config) as err:
        SwtpmInstance(tmp_path / "blank").start()
    assert err.value.code == "tpm.swtpm.no_ca"


def test_a_long_state_folder_listens_in_a_private_runtime_folder(
    tmp_path: Path, manufactured_tpm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: `trustfleet demo --workdir <a pytest tmp path>` failed at provisioning
    # because DEVDIR/tpm/swtpm.sock.ctrl was longer than AF_UNIX allows.
    runtime = Path(tempfile.mkdtemp(prefix="tf-run-")) / "run"  # short, whatever tmp_path is
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    state = clone_state(manufactured_tpm, tmp_path / ("d" * 120) / "tpm")
    instance = SwtpmInstance(state)
    assert instance.socket_path.parent == runtime
    assert runtime.stat().st_mode & 0o777 == 0o700
    assert SwtpmInstance(tmp_path / ("e" * 120) / "tpm").socket_path != instance.socket_path
    with instance, Tpm(tcti=instance.tcti) as tpm:
        assert tpm.clock().reset_count >= 0
    assert not instance.socket_path.exists()
    shutil.rmtree(runtime.parent)


@pytest.mark.parametrize("problem", ["too-long", "not-private"])
def test_an_unusable_runtime_folder_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, problem: str
) -> None:
    runtime = tmp_path / ("r" * 100 if problem == "too-long" else "run")
    if problem == "not-private":
        runtime.mkdir(mode=0o755)
        runtime.chmod(0o755)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    with pytest.raises(Config) as err:
        SwtpmInstance(tmp_path / ("d" * 120))
    assert err.value.code == "tpm.swtpm.path"


def test_vendor_ca_certificates_exist_only_after_manufacturing(
    tmp_path: Path, vendor_ca: ManufacturerCa, manufactured_tpm: Path
) -> None:
    assert [p.name for p in vendor_ca.certificate_paths()] == [
        "swtpm-localca-rootca-cert.pem",
        "issuercert.pem",
    ]
    with pytest.raises(NotFound):
        ManufacturerCa(tmp_path / "unused").certificate_paths()


def test_a_stopped_tpm_is_unavailable(tmp_path: Path, manufactured_tpm: Path) -> None:
    instance = SwtpmInstance(clone_state(manufactured_tpm, tmp_path / "tpm"))
    with instance:
        tpm = Tpm(tcti=instance.tcti)
    with pytest.raises(Unavailable) as err:
        tpm.clock()
    assert err.value.code == "tpm.unreachable"
    tpm.close()
    with pytest.raises(Unavailable) as err:
        Tpm(tcti=instance.tcti)
    assert err.value.code == "tpm.unreachable"
