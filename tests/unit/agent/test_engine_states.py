"""The update state machine against a local repository: outcomes, fallbacks, recovery."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from otakit import BootKey, LocalRepository, image_bytes, make_device, manifest_for

from support.releasekit import NOW
from trustfleet.agent.platform import BootEnv, FaultPlan, boot
from trustfleet.agent.updater._reports import OtaReport
from trustfleet.agent.updater.engine import Step, UpdateEngine, UpdateRequest
from trustfleet.ota.delta import make_delta
from trustfleet.ota.status_report import parse_ota_status

V1, V2 = image_bytes("1.0.0"), image_bytes("2.0.0")


class Device:
    """A device folder, its repository, and boots of it (each boot a new engine)."""

    def __init__(self, tmp: Path) -> None:
        self.key = BootKey()
        self.layout = make_device(
            tmp / "dev", self.key, V1, manifest_for(self.key, V1, version="1.0.0")
        )
        self.repo = LocalRepository(self.layout.downloads)
        self.reports: list[OtaReport] = []
        self.faults = FaultPlan()
        self.tmp = tmp

    def delta_bytes(self, old: bytes, new: bytes) -> bytes:
        (self.tmp / "old").write_bytes(old)
        (self.tmp / "new").write_bytes(new)
        make_delta(self.tmp / "old", self.tmp / "new", self.tmp / "delta")
        return (self.tmp / "delta").read_bytes()

    def report(self, report: OtaReport) -> None:
        parse_ota_status(report.to_document())  # what the service's ingest accepts
        self.reports.append(report)

    def engine(self) -> UpdateEngine:
        result = boot(
            self.layout.directory, env_store=self.layout.env_store(), slots=self.layout.slots()
        )
        return UpdateEngine(
            layout=self.layout,
            boot=result,
            repository=lambda: self.repo,
            report=self.report,
            now=lambda: NOW,
            faults=self.faults,
        )

    def run(self, request: UpdateRequest, health: Callable[[], str | None] = lambda: None) -> str:
        """Update, then reboot and recover until an outcome (bounded); the final state."""
        step: Step | None = self.engine().update(request)
        for _ in range(8):
            if step is None or not step.reboot:
                break
            step = self.engine().recover(health=health)
        assert step is not None
        return step.state.state

    def states(self) -> list[str]:
        return [r.state for r in self.reports]

    def file_state(self) -> dict[str, object]:
        doc: dict[str, object] = json.loads(self.layout.state_file.read_text())
        return doc


@pytest.fixture
def dev(tmp_path: Path) -> Device:
    return Device(tmp_path)


def test_update_by_delta_commits_after_the_health_check(dev: Device) -> None:
    dev.repo.publish(
        dev.key, V2, version="2.0.0", delta_from=("1.0.0", V1, dev.delta_bytes(V1, V2))
    )
    assert dev.run(UpdateRequest(version="2.0.0", campaign="c-1")) == "committed"
    assert dev.states()[0] == "checking" and dev.states()[-2:] == ["rebooting", "committed"]
    assert all(r.delta is True for r in dev.reports if r.state in ("installing", "rebooting"))
    assert {r.campaign for r in dev.reports} == {"c-1"}
    assert dev.layout.env_store().read() == BootEnv(boot_slot="b")
    state = dev.file_state()
    assert (state["floor"], state["installed_version"], state["state"]) == (
        "2.0.0",
        "2.0.0",
        "committed",
    )
    assert dev.engine().update(UpdateRequest()).state.state == "up_to_date"
    assert not dev.layout.downloads.exists()


def test_a_corrupt_delta_falls_back_to_the_full_image(dev: Device) -> None:
    delta = bytearray(dev.delta_bytes(V1, V2))
    delta[len(delta) // 2] ^= 0xFF
    dev.repo.publish(dev.key, V2, version="2.0.0", delta_from=("1.0.0", V1, bytes(delta)))
    assert dev.run(UpdateRequest()) == "committed"
    fallback = [r for r in dev.reports if r.code == "ota.delta.failed"]
    assert fallback and fallback[0].delta is False
    assert [r.delta for r in dev.reports if r.state == "rebooting"] == [False]
    assert (dev.layout.slots().image_path("b")).read_bytes() == V2


def test_progress_reports_are_throttled(dev: Device) -> None:
    dev.repo.publish(dev.key, V2, version="2.0.0")
    assert dev.run(UpdateRequest()) == "committed"
    progress = [r for r in dev.reports if r.state == "downloading" and r.total]
    assert 1 <= len(progress) <= 5
    assert progress[-1].bytes == progress[-1].total == len(V2)


def test_a_failed_health_check_rolls_back(dev: Device) -> None:
    dev.repo.publish(dev.key, V2, version="2.0.0")
    assert dev.run(UpdateRequest(), health=lambda: "broker unreachable") == "rolled_back"
    assert dev.states().count("rebooting") == 4  # the switch, then 3 failed trial boots
    assert dev.layout.env_store().read() == BootEnv(boot_slot="a")
    state = dev.file_state()
    assert (state["floor"], state["installed_version"]) == ("1.0.0", "1.0.0")
    assert "failed 3 trial boot" in str(state["reason"])
    dev.reports.clear()
    assert dev.run(UpdateRequest()) == "committed"  # the next attempt completes


REFUSALS = {
    # name: (version asked for, outcome, code)
    "below-floor": ("0.9.0", "refused", "ota.version.below_floor"),
    "min-version-above-installed": ("3.0.0", "refused", "ota.version.min_version"),
    "bad-boot-signature": ("4.0.0", "failed", "ota.boot.invalid"),
    "other-boot-key": ("5.0.0", "refused", "ota.boot.key"),
    "manifest-for-other-model": ("6.0.0", "failed", "ota.manifest.mismatch"),
    "target-for-other-model": ("7.0.0", "refused", "ota.model.mismatch"),
    "unknown-version": ("9.9.9", "refused", "ota.release.unknown"),
    "not-a-version": ("../../etc", "refused", "ota.version.invalid"),
    "same-version": ("1.0.0", "up_to_date", "ota.up_to_date"),
}


def _publish_refusal_releases(dev: Device) -> None:
    """The releases the :data:`REFUSALS` ask for, each wrong in its own way."""
    key = dev.key
    dev.repo.publish(key, V1, version="1.0.0")
    dev.repo.publish(key, image_bytes("0.9.0"), version="0.9.0")
    dev.repo.publish(key, image_bytes("3.0.0"), version="3.0.0", min_version="2.0.0")
    dev.repo.publish(key, image_bytes("4.0.0"), version="4.0.0", signature=key.sign(b"other"))
    dev.repo.publish(BootKey(), image_bytes("5.0.0"), version="5.0.0")
    other = manifest_for(key, image_bytes("6.0.0"), version="6.0.0", model="other-v1")
    # 6.0.0: listed for this model, its manifest names another; 7.0.0: listed for another.
    for version, listed_for in (("6.0.0", "unit-v1"), ("7.0.0", "other-v1")):
        meta = {"kind": "manifest", "model": listed_for, "version": version}
        dev.repo.add(f"unit-v1/{version}/release.json", other, meta)


@pytest.mark.parametrize("case", list(REFUSALS), ids=list(REFUSALS))
def test_refused_releases_leave_the_device_alone(dev: Device, case: str) -> None:
    _publish_refusal_releases(dev)
    version, outcome, code = REFUSALS[case]
    request = UpdateRequest(version=version)
    env_before = dev.layout.env_store().read()
    step = dev.engine().update(request)
    assert (step.state.state, step.state.code, step.reboot) == (outcome, code, False)
    assert dev.layout.env_store().read() == env_before
    assert dev.layout.slots().manifest_bytes("b", max_bytes=1 << 16) is None
    state = dev.file_state()
    assert (state["floor"], state["installed_version"]) == ("1.0.0", "1.0.0")
    assert dev.engine().recover(health=lambda: None) is None
    assert (
        boot(dev.layout.directory, env_store=dev.layout.env_store(), slots=dev.layout.slots()).slot
        == "a"
    )


BEFORE_SWITCH = ["checking", "downloading", "installing", "installed", "rebooting"]


@pytest.mark.parametrize("point", BEFORE_SWITCH, ids=BEFORE_SWITCH)
def test_an_error_before_the_reboot_fails_cleanly_and_the_next_attempt_completes(
    dev: Device, point: str
) -> None:
    dev.repo.publish(dev.key, V2, version="2.0.0")
    dev.faults = FaultPlan.parse(f"{point}:error")
    step = dev.engine().update(UpdateRequest())
    assert (step.state.state, step.state.code, step.reboot) == (
        "failed",
        "ota.fault.injected",
        False,
    )
    assert dev.layout.env_store().read() == BootEnv(boot_slot="a")
    dev.faults = FaultPlan()
    assert dev.run(UpdateRequest()) == "committed"


@pytest.mark.parametrize("point", ["trial", "committed"], ids=["trial", "committed"])
def test_an_error_on_trial_rolls_back_and_the_next_attempt_completes(
    dev: Device, point: str
) -> None:
    dev.repo.publish(dev.key, V2, version="2.0.0")
    dev.faults = FaultPlan.parse(f"{point}:error")
    assert dev.run(UpdateRequest()) == "rolled_back"
    dev.faults = FaultPlan()
    assert dev.run(UpdateRequest()) == "committed"


def test_write_error_at_an_offset_then_a_resumed_install_completes(dev: Device) -> None:
    dev.repo.publish(dev.key, V2, version="2.0.0")
    dev.faults = FaultPlan.parse("write:error@40000")
    assert dev.engine().update(UpdateRequest()).state.code == "ota.fault.injected"
    assert dev.layout.slots().image_path("b").stat().st_size == 40000
    dev.faults = FaultPlan()
    assert dev.run(UpdateRequest()) == "committed"
    digest = hashlib.sha256(dev.layout.slots().image_path("b").read_bytes()).hexdigest()
    assert digest == hashlib.sha256(V2).hexdigest()


def test_an_interrupted_state_is_recovered_as_failed(dev: Device) -> None:
    dev.repo.publish(dev.key, V2, version="2.0.0")
    dev.faults = FaultPlan.parse("installing:error")
    dev.engine().update(UpdateRequest())
    doc = dev.file_state()
    doc["state"] = "installing"  # as if the process had died there
    dev.layout.state_file.write_text(json.dumps(doc))
    step = dev.engine().recover(health=lambda: None)
    assert step is not None and (step.state.state, step.state.code) == ("failed", "ota.interrupted")


def test_fault_specs_are_checked() -> None:
    plan = FaultPlan.parse("installing:error, write:kill@123")
    assert plan.write_fault() is not None
    for bad in ("nowhere:error", "installing:explode", "write:kill@-1", "x" * 2000):
        with pytest.raises(Exception, match="is not a fault"):
            FaultPlan.parse(bad)
