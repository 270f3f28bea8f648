"""Each transition of the update engine (``agent/updater/engine.py``): the exact state, slot,
boot environment and report it leaves, after an update step and after every kind of boot."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from otakit import MODEL, BootKey, LocalRepository, image_bytes, make_device, manifest_for

from support.releasekit import NOW
from trustfleet.agent.platform import BootEnv, BootResult, FaultPlan, boot
from trustfleet.agent.platform.slots import Slots
from trustfleet.agent.updater import engine as engine_module
from trustfleet.agent.updater._reports import OtaReport
from trustfleet.agent.updater.engine import EngineLimits, Step, UpdateEngine, UpdateRequest
from trustfleet.errors import Conflict, TrustFleetError, VerificationFailed
from trustfleet.ota.delta import make_delta
from trustfleet.ota.manifest import MAX_MANIFEST_BYTES

V1, V2 = image_bytes("1.0.0"), image_bytes("2.0.0")


class Device:
    """A device folder on release 1.0.0 with 2.0.0 published, and its reports."""

    def __init__(self, tmp: Path) -> None:
        self.key = BootKey()
        self.v1_manifest = manifest_for(self.key, V1, version="1.0.0")
        self.layout = make_device(tmp / "dev", self.key, V1, self.v1_manifest)
        self.repo = LocalRepository(self.layout.downloads)
        self.v2_manifest = self.repo.publish(self.key, V2, version="2.0.0")
        self.reports: list[OtaReport] = []
        self.tmp = tmp

    def boot(self) -> BootResult:
        return boot(
            self.layout.directory, env_store=self.layout.env_store(), slots=self.layout.slots()
        )

    def engine(self, *, booted: BootResult | None = None, **kwargs: Any) -> UpdateEngine:
        kwargs.setdefault("repository", lambda: self.repo)
        kwargs.setdefault("faults", FaultPlan())
        return UpdateEngine(
            layout=self.layout,
            boot=booted or self.boot(),
            report=self.reports.append,
            now=lambda: NOW,
            **kwargs,
        )

    def env(self) -> BootEnv:
        return self.layout.env_store().read()

    def set_env(self, **fields: Any) -> None:
        self.layout.env_store().write(BootEnv(**fields))

    def file_state(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.layout.state_file.read_text())
        return doc

    def edit_state(self, **changes: Any) -> None:
        doc = self.file_state()
        doc.update(changes)
        self.layout.state_file.write_text(json.dumps(doc))

    def to_rebooting(self, request: UpdateRequest | None = None) -> Step:
        """Update to 2.0.0 up to the reboot into slot b."""
        step = self.engine().update(request or UpdateRequest(campaign="c-1"))
        assert (step.state.state, step.state.target_slot, step.reboot) == ("rebooting", "b", True)
        return step

    def downloaded(self) -> list[str]:
        folder = self.layout.downloads
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def dev(tmp_path: Path) -> Device:
    return Device(tmp_path)


def _healthy() -> str | None:
    return None


def _never_called() -> str | None:
    raise AssertionError("the health check must not run")


def _main(reports: list[OtaReport]) -> list[tuple[Any, ...]]:
    """The reports without download progress, as (state, version, from, delta, code)."""
    return [(r.state, r.version, r.from_version, r.delta, r.code) for r in reports if not r.total]


# -- values ---------------------------------------------------------------------------------


def test_requests_steps_and_limits_are_immutable_keyword_only_values(dev: Device) -> None:
    state = dev.engine().state
    values = [UpdateRequest(), Step(state=state), EngineLimits()]
    for value in values:
        assert not hasattr(value, "__dict__")
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, dataclasses.fields(value)[0].name, None)
    for cls in (UpdateRequest, EngineLimits):
        with pytest.raises(TypeError):
            cls(None)
    with pytest.raises(TypeError):
        Step(state)  # type: ignore[misc]
    assert (UpdateRequest().version, UpdateRequest().campaign) == (None, None)
    assert Step(state=state).reboot is False


def test_the_default_limits() -> None:
    assert EngineLimits() == EngineLimits(
        max_manifest_bytes=MAX_MANIFEST_BYTES, max_image_bytes=1 << 30, progress_reports=4
    )
    assert EngineLimits().max_image_bytes == 1_073_741_824


# -- construction ---------------------------------------------------------------------------


def test_a_device_without_fuses_has_no_updater(dev: Device) -> None:
    booted = dev.boot()
    (dev.layout.directory / "fuses.json").unlink()
    with pytest.raises(VerificationFailed) as info:
        UpdateEngine(
            layout=dev.layout,
            boot=booted,
            repository=lambda: dev.repo,
            report=dev.reports.append,
            now=lambda: NOW,
        )
    assert info.value.code == "boot.fuses"
    assert not dev.layout.state_file.exists()


def test_the_first_engine_writes_the_floor_of_the_booted_release(dev: Device) -> None:
    assert not dev.layout.state_file.exists()
    engine = dev.engine()
    assert dev.file_state() == {
        "schema": "trustfleet.ota-state/1",
        **dataclasses.asdict(engine.state),
    }
    assert (engine.state.state, engine.state.floor, engine.state.installed_version) == (
        "idle",
        "1.0.0",
        "1.0.0",
    )


def test_an_engine_without_a_fault_plan_updates(dev: Device) -> None:
    step = dev.engine(faults=None).update(UpdateRequest())
    assert (step.state.state, step.reboot) == ("rebooting", True)
    assert dev.engine(faults=None).recover(health=_healthy) == Step(state=dev.engine().state)
    assert dev.engine().state.state == "committed"


# -- an update, step by step ----------------------------------------------------------------


def test_a_full_image_update_reports_each_step_and_switches_the_environment(
    dev: Device,
) -> None:
    dev.set_env(boot_slot="a", bootlimit=5)
    step = dev.to_rebooting(UpdateRequest(version="2.0.0", campaign="c-1"))
    assert _main(dev.reports) == [
        ("checking", "2.0.0", "1.0.0", None, ""),
        ("downloading", "2.0.0", "1.0.0", False, ""),
        ("installing", "2.0.0", "1.0.0", False, ""),
        ("rebooting", "2.0.0", "1.0.0", False, ""),
    ]
    assert {r.campaign for r in dev.reports} == {"c-1"}
    state = step.state
    assert (state.target_slot, state.from_slot, state.delta, state.version) == (
        "b",
        "a",
        False,
        "2.0.0",
    )
    assert dev.file_state()["state"] == "rebooting"
    assert dev.env() == BootEnv(boot_slot="b", upgrade_available=True, bootcount=0, bootlimit=5)
    assert dev.repo.refreshes == 1
    assert dev.layout.slots().manifest_bytes("b", max_bytes=1 << 16) == dev.v2_manifest


def test_progress_is_reported_in_four_steps_plus_the_last_by_default(dev: Device) -> None:
    dev.to_rebooting()
    progress = [(r.bytes, r.total) for r in dev.reports if r.total]
    assert len(progress) == 5
    assert progress[0] == (0, len(V2)) and progress[-1] == (len(V2), len(V2))
    assert all(r.state == "downloading" and r.version == "2.0.0" for r in dev.reports if r.total)


def test_progress_reports_follow_the_limits(dev: Device) -> None:
    dev.engine(limits=EngineLimits(progress_reports=1)).update(UpdateRequest())
    assert [(r.bytes, r.total) for r in dev.reports if r.total] == [
        (0, len(V2)),
        (len(V2), len(V2)),
    ]


def test_a_release_over_the_image_limit_is_refused(dev: Device) -> None:
    step = dev.engine(limits=EngineLimits(max_image_bytes=len(V2) - 1)).update(UpdateRequest())
    assert (step.state.state, step.state.version, step.reboot) == ("refused", "2.0.0", False)
    assert dev.env() == BootEnv(boot_slot="a")


def test_the_data_key_is_resealed_for_the_new_release_before_the_switch(
    dev: Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Path, str, bytes, bytes, BootEnv]] = []

    def reseal_for(
        directory: Path, *, model: str, current_manifest: bytes, next_manifest: bytes
    ) -> None:
        calls.append((directory, model, current_manifest, next_manifest, dev.env()))

    monkeypatch.setattr(engine_module, "reseal_for", reseal_for)
    dev.to_rebooting()
    assert calls == [
        (dev.layout.directory, MODEL, dev.v1_manifest, dev.v2_manifest, BootEnv(boot_slot="a"))
    ]


def test_an_unreadable_running_manifest_reseals_from_nothing_and_uses_the_full_image(
    dev: Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bytes] = []

    def reseal_for(directory: Path, *, model: str, current_manifest: bytes, **_: Any) -> None:
        calls.append(current_manifest)

    monkeypatch.setattr(engine_module, "reseal_for", reseal_for)
    engine = dev.engine()
    (dev.layout.slots().path("a") / "release.json").unlink()
    step = engine.update(UpdateRequest())
    assert (step.state.state, step.state.delta) == ("rebooting", False)
    assert calls == [b""]


def test_an_update_while_one_is_in_progress_is_busy(dev: Device) -> None:
    dev.to_rebooting()
    before = dev.file_state()
    with pytest.raises(Conflict) as info:
        dev.engine().update(UpdateRequest())
    assert info.value.code == "ota.busy"
    assert dev.file_state() == before


def test_a_new_attempt_clears_what_the_last_one_left(dev: Device) -> None:
    dev.engine()
    dev.edit_state(
        state="failed", campaign="old", version="9.0.0", target_slot="b", from_slot="a", delta=True
    )
    dev.engine().update(UpdateRequest(version="3.0.0"))
    assert _main(dev.reports)[0] == ("checking", "3.0.0", "1.0.0", None, "")
    state = dev.engine().state
    assert (state.campaign, state.target_slot, state.from_slot, state.delta) == (
        None,
        None,
        None,
        None,
    )


# -- refusals and failures ------------------------------------------------------------------


def test_a_refused_newest_release_names_its_version(dev: Device) -> None:
    dev.repo.publish(dev.key, image_bytes("3.0.0"), version="3.0.0", min_version="2.0.0")
    step = dev.engine().update(UpdateRequest())
    assert (step.state.state, step.state.code, step.state.version) == (
        "refused",
        "ota.version.min_version",
        "3.0.0",
    )
    assert _main(dev.reports)[-1] == ("refused", "3.0.0", "1.0.0", None, "ota.version.min_version")


def test_an_unknown_release_keeps_the_requested_version(dev: Device) -> None:
    step = dev.engine().update(UpdateRequest(version="9.9.9"))
    assert (step.state.state, step.state.code, step.state.version) == (
        "refused",
        "ota.release.unknown",
        "9.9.9",
    )


class _BrokenRepository(LocalRepository):
    def __init__(self, out: Path, error: BaseException) -> None:
        super().__init__(out)
        self.error = error

    def refresh(self) -> None:
        raise self.error


def test_a_storage_error_fails_the_update_as_ota_storage(dev: Device) -> None:
    repo = _BrokenRepository(dev.layout.downloads, OSError(28, "No space left on device"))
    step = dev.engine(repository=lambda: repo).update(UpdateRequest())
    assert (step.state.state, step.state.code, step.reboot) == ("failed", "ota.storage", False)
    assert "No space left on device" in step.state.reason


def test_an_error_without_a_code_fails_the_update_as_ota_failed(dev: Device) -> None:
    repo = _BrokenRepository(dev.layout.downloads, TrustFleetError("no route"))
    step = dev.engine(repository=lambda: repo).update(UpdateRequest())
    assert (step.state.state, step.state.code, step.state.reason) == (
        "failed",
        "ota.failed",
        "no route",
    )
    assert _main(dev.reports)[-1] == ("failed", None, "1.0.0", None, "ota.failed")


def test_a_failure_before_the_switch_keeps_the_download_and_the_environment(
    dev: Device,
) -> None:
    dev.set_env(boot_slot="a", bootcount=2, bootlimit=5)
    step = dev.engine(faults=FaultPlan.parse("installed:error")).update(UpdateRequest())
    assert (step.state.state, step.state.code, step.state.from_slot) == (
        "failed",
        "ota.fault.injected",
        "a",
    )
    assert dev.env() == BootEnv(boot_slot="a", bootcount=2, bootlimit=5)
    assert dev.downloaded() != []  # the next attempt resumes from it


def test_a_failure_after_the_switch_switches_back(dev: Device) -> None:
    dev.set_env(boot_slot="a", bootlimit=5)
    step = dev.engine(faults=FaultPlan.parse("rebooting:error")).update(UpdateRequest())
    assert (step.state.state, step.state.code, step.reboot) == (
        "failed",
        "ota.fault.injected",
        False,
    )
    assert dev.env() == BootEnv(boot_slot="a", bootlimit=5)


def test_a_slot_that_still_verifies_as_another_release_is_not_booted(
    dev: Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Storage that silently dropped the writes: slot b still holds a valid 1.0.0."""
    slot_b = dev.layout.slots().path("b")
    slot_b.mkdir(parents=True)
    (slot_b / "image.bin").write_bytes(V1)
    (slot_b / "release.json").write_bytes(dev.v1_manifest)
    monkeypatch.setattr(engine_module, "write_image", lambda *a, **k: None)
    monkeypatch.setattr(Slots, "complete", lambda self, slot, *, manifest: None)
    step = dev.engine().update(UpdateRequest())
    assert (step.state.state, step.state.code) == ("failed", "ota.boot.invalid")
    assert dev.layout.slots().manifest_bytes("b", max_bytes=1 << 16) is None  # invalidated
    assert dev.env() == BootEnv(boot_slot="a")


# -- deltas ---------------------------------------------------------------------------------


def _publish_delta(dev: Device, delta: bytes | None = None) -> None:
    (dev.tmp / "old").write_bytes(V1)
    (dev.tmp / "new").write_bytes(V2)
    make_delta(dev.tmp / "old", dev.tmp / "new", dev.tmp / "delta")
    data = delta if delta is not None else (dev.tmp / "delta").read_bytes()
    dev.repo.publish(dev.key, V2, version="2.0.0", delta_from=("1.0.0", V1, data))


def test_a_delta_update_reports_delta_throughout(dev: Device) -> None:
    _publish_delta(dev)
    dev.to_rebooting()
    assert _main(dev.reports) == [
        ("checking", None, "1.0.0", None, ""),
        ("downloading", "2.0.0", "1.0.0", True, ""),
        ("installing", "2.0.0", "1.0.0", True, ""),
        ("rebooting", "2.0.0", "1.0.0", True, ""),
    ]
    assert dev.layout.slots().image_path("b").read_bytes() == V2


def test_a_delta_that_cannot_be_read_falls_back_to_the_full_image(dev: Device) -> None:
    _publish_delta(dev)

    def on_download(path: str) -> None:
        if "delta" in path:
            raise OSError("read error on the delta")

    dev.repo.on_download = on_download
    step = dev.to_rebooting()
    fallback = [r for r in dev.reports if r.code == "ota.delta.failed" and not r.total]
    assert [(r.state, r.delta, r.reason) for r in fallback] == [
        ("downloading", False, "delta failed: read error on the delta")
    ]
    assert _main(dev.reports)[-2:] == [
        ("installing", "2.0.0", "1.0.0", False, ""),
        ("rebooting", "2.0.0", "1.0.0", False, ""),
    ]
    assert step.state.delta is False
    assert dev.layout.slots().image_path("b").read_bytes() == V2


def test_a_corrupt_delta_falls_back_with_the_reason(dev: Device) -> None:
    _publish_delta(dev, delta=b"not a delta")
    dev.to_rebooting()
    (fallback,) = [r for r in dev.reports if r.code == "ota.delta.failed" and not r.total]
    assert fallback.reason.startswith("delta failed: ") and "None" not in fallback.reason
    assert len(fallback.reason) > len("delta failed: ")


# -- after a boot ---------------------------------------------------------------------------


def test_nothing_to_recover_on_an_idle_device(dev: Device) -> None:
    engine = dev.engine()
    before = dev.file_state()
    assert engine.recover(health=_never_called) is None
    assert dev.file_state() == before
    assert dev.env() == BootEnv(boot_slot="a")


def test_the_new_slot_is_on_trial_during_the_health_check_then_committed(dev: Device) -> None:
    dev.set_env(boot_slot="a", bootlimit=5)
    dev.to_rebooting()
    seen: list[str] = []

    def health() -> str | None:
        seen.append(dev.file_state()["state"])
        return None

    engine = dev.engine()
    step = engine.recover(health=health)
    assert seen == ["trial"]
    assert step is not None and step == Step(state=engine.state, reboot=False)
    assert (step.state.state, step.state.floor, step.state.installed_version) == (
        "committed",
        "2.0.0",
        "2.0.0",
    )
    assert dev.env() == BootEnv(boot_slot="b", bootlimit=5)
    assert _main(dev.reports)[-1] == ("committed", "2.0.0", "1.0.0", False, "")
    assert dev.downloaded() == []


def test_a_failed_health_check_reports_and_reboots_for_another_trial(dev: Device) -> None:
    dev.to_rebooting()
    dev.reports.clear()
    engine = dev.engine()
    step = engine.recover(health=lambda: "broker unreachable")
    assert step == Step(state=engine.state, reboot=True)
    assert step.state.state == "trial"
    assert dev.reports == [
        OtaReport(
            state="rebooting",
            campaign="c-1",
            version="2.0.0",
            from_version="1.0.0",
            delta=False,
            reason="health check failed: broker unreachable",
            code="ota.health.failed",
        )
    ]
    assert dev.env() == BootEnv(boot_slot="b", upgrade_available=True, bootcount=1)


@pytest.mark.parametrize("state", ["installed", "rebooting", "trial"])
def test_a_boot_into_the_new_slot_resumes_the_trial(dev: Device, state: str) -> None:
    dev.to_rebooting()
    dev.edit_state(state=state)  # cut after the environment switched
    step = dev.engine().recover(health=_healthy)
    assert step is not None and (step.state.state, step.state.floor) == ("committed", "2.0.0")


def test_a_boot_on_the_old_slot_after_the_switch_is_rolled_back(dev: Device) -> None:
    dev.to_rebooting()
    dev.set_env(boot_slot="a")  # the environment was switched back without a trial
    step = dev.engine().recover(health=_never_called)
    assert step is not None
    assert (step.state.state, step.state.code, step.state.reason, step.reboot) == (
        "rolled_back",
        "ota.rolled_back",
        "the new slot did not boot",
        False,
    )
    assert (step.state.floor, step.state.installed_version) == ("1.0.0", "1.0.0")
    assert dev.downloaded() == []


def test_exhausted_trial_boots_roll_back_with_the_bootloader_reason(dev: Device) -> None:
    dev.to_rebooting()
    dev.edit_state(state="installed")
    dev.set_env(boot_slot="b", upgrade_available=True, bootcount=3, bootlimit=3)
    step = dev.engine().recover(health=_never_called)
    assert step is not None
    assert (step.state.state, step.state.code, step.state.reason) == (
        "rolled_back",
        "ota.rolled_back",
        "slot b failed 3 trial boot(s)",
    )
    assert dev.env() == BootEnv(boot_slot="a", bootlimit=3)


def test_a_cut_before_the_switch_is_an_interrupted_attempt_that_keeps_its_download(
    dev: Device,
) -> None:
    dev.to_rebooting()
    dev.edit_state(state="installed")
    dev.set_env(boot_slot="a")  # the cut came before the environment was written
    downloaded = dev.downloaded()
    step = dev.engine().recover(health=_never_called)
    assert step is not None
    assert (step.state.state, step.state.code, step.state.reason, step.reboot) == (
        "failed",
        "ota.interrupted",
        "interrupted while installed; the next attempt resumes it",
        False,
    )
    assert downloaded != [] and dev.downloaded() == downloaded


def test_a_commit_cut_before_the_state_was_written_is_finished_without_a_trial(
    dev: Device,
) -> None:
    dev.to_rebooting()
    dev.set_env(boot_slot="b", bootlimit=4)  # the environment's commit was written
    engine = dev.engine(faults=FaultPlan.parse("trial:error,committed:error"))
    step = engine.recover(health=_never_called)
    assert step is not None
    assert (step.state.state, step.state.floor, step.state.installed_version) == (
        "committed",
        "2.0.0",
        "2.0.0",
    )
    assert dev.env() == BootEnv(boot_slot="b", bootlimit=4)


def test_a_fallback_onto_the_new_slot_is_not_committed(dev: Device) -> None:
    dev.to_rebooting()
    dev.set_env(boot_slot="a")
    dev.layout.slots().invalidate("a")  # the old slot no longer verifies: b boots instead
    booted = dev.boot()
    assert (booted.slot, booted.fell_back) == ("b", True)
    step = dev.engine(booted=booted).recover(health=_never_called)
    assert step is not None
    assert (step.state.state, step.state.code, step.state.reason) == (
        "failed",
        "ota.unverified_fallback",
        "running 2.0.0 without a passed health check",
    )
    assert step.state.floor == "1.0.0"


def test_a_failed_attempt_with_a_target_slot_has_nothing_to_recover(dev: Device) -> None:
    dev.engine(faults=FaultPlan.parse("installed:error")).update(UpdateRequest())
    before = dev.file_state()
    assert (before["state"], before["target_slot"]) == ("failed", "b")
    assert dev.engine().recover(health=_never_called) is None
    assert dev.file_state() == before


def test_the_installed_version_follows_the_booted_release(dev: Device) -> None:
    dev.engine()
    dev.edit_state(installed_version="0.5.0")
    assert dev.engine().recover(health=_never_called) is None
    assert dev.file_state()["installed_version"] == "1.0.0"


def test_a_commit_whose_environment_was_not_cleared_is_cleared(dev: Device) -> None:
    dev.to_rebooting()
    dev.engine().recover(health=_healthy)
    dev.set_env(boot_slot="b", upgrade_available=True, bootcount=1, bootlimit=4)
    assert dev.engine().recover(health=_never_called) is None
    assert dev.env() == BootEnv(boot_slot="b", bootlimit=4)
    assert dev.file_state()["state"] == "committed"
