"""The device's update state machine (docs/ota.md, "Device side").

::

    idle → checking → downloading → installing → installed → rebooting ─(boot)→ trial → committed
                 ↘ refused / up_to_date      ↘ failed (env untouched)          ↘ rolled_back

Every transition is written to ``ota-state.json`` (atomically, fsynced) before anything else
happens, so a process killed anywhere restarts from a state it can read. Until ``installed``
the boot environment still points at the active slot, so a half-written inactive slot is
never booted; the environment switches (``boot_slot``, ``upgrade_available=1``,
``bootcount=0``) only after the new slot is complete and verified the way the bootloader will
verify it. After the reboot the new slot is on trial: the agent's health check passes →
commit (``upgrade_available=0``, the version floor rises); it fails → reboot, and after
``bootlimit`` failed boots the bootloader falls back and the update is ``rolled_back``.

The engine decides from TUF-verified bytes only: the command names at most a version, TUF
decides which bytes, if any, are installed.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from trustfleet.agent._tpmhooks import reseal_for
from trustfleet.agent.platform.bootenv import BootEnv, Slot, other_slot
from trustfleet.agent.platform.bootloader import (
    BootResult,
    fused_boot_key,
    read_fuses,
    verify_slot,
)
from trustfleet.agent.platform.faults import FaultPlan
from trustfleet.agent.platform.layout import DeviceLayout
from trustfleet.agent.updater._builders import check_builder
from trustfleet.agent.updater._install import write_delta, write_image
from trustfleet.agent.updater._reports import REPORTED, OtaReport, ProgressThrottle
from trustfleet.agent.updater._state import OtaState, State, load_state, save_state
from trustfleet.agent.updater._targets import (
    Refusal,
    Repository,
    check_policy,
    choose_manifest,
    fetch_manifest,
    matching_target,
)
from trustfleet.errors import Conflict, TrustFleetError, Unavailable, VerificationFailed
from trustfleet.ota.manifest import MAX_MANIFEST_BYTES, DeltaRef, ReleaseManifest, parse_manifest

__all__ = ["EngineLimits", "Repository", "Step", "UpdateEngine", "UpdateRequest"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateRequest:
    """What the ``update`` command may ask: a version (else the newest) and a campaign id."""

    version: str | None = None
    campaign: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """What the engine left: the state, and whether the device must reboot now."""

    state: OtaState
    reboot: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineLimits:
    """Bounds and builder policy of an update (``[ota]`` in ``device.toml``)."""

    max_manifest_bytes: int = MAX_MANIFEST_BYTES
    max_image_bytes: int = 1 << 30
    progress_reports: int = 4
    allowed_builders: tuple[str, ...] = ()
    max_provenance_bytes: int = 256 * 1024


class UpdateEngine:
    """One device's updater.

    Args:
        layout: The device folder.
        boot: What the bootloader booted this time.
        repository: Makes the TUF client (called when an update starts).
        report: Receives each report (from the engine's thread).
        now: The clock.
        faults: Injected faults (tests and simulation only).
        limits: Bounds.

    Raises:
        VerificationFailed: The device has no fuses (code ``boot.fuses``).
    """

    def __init__(
        self,
        *,
        layout: DeviceLayout,
        boot: BootResult,
        repository: Callable[[], Repository],
        report: Callable[[OtaReport], None],
        now: Callable[[], datetime],
        faults: FaultPlan | None = None,
        limits: EngineLimits = EngineLimits(),
    ) -> None:
        fuses = read_fuses(layout.directory)
        if fuses is None:
            raise VerificationFailed(
                "this device has no boot chain (no fuses.json)",
                hint="updates need a device provisioned with A/B slots",
                code="boot.fuses",
            )
        self._layout, self._boot, self._fuses = layout, boot, fuses
        self._slots, self._env = layout.slots(), layout.env_store()
        self._repository, self._report, self._now = repository, report, now
        self._faults, self._limits = faults or FaultPlan(), limits
        self._state = load_state(layout.state_file, booted_version=boot.version)
        if not layout.state_file.exists():  # first boot with the updater: the floor starts here
            self._save(self._state)

    @property
    def state(self) -> OtaState:
        """The current state."""
        return self._state

    # -- recovery after a boot -------------------------------------------------------------

    def recover(self, *, health: Callable[[], str | None]) -> Step | None:
        """Finish what the state file says after a boot (the trial, a rollback, a cut).

        Args:
            health: The health check of a new slot: None when healthy, else why not.

        Returns:
            The step taken, or None when there was nothing to recover.
        """
        st, boot = self._state, self._boot
        if st.target_slot is not None and st.state in ("installed", "rebooting", "trial"):
            if boot.slot == st.target_slot:
                return self._on_new_slot(health)
            if st.state != "installed" or boot.fell_back:
                why = boot.reason or "the new slot did not boot"
                return self._outcome("rolled_back", reason=why, code="ota.rolled_back")
        if st.in_progress:
            why = f"interrupted while {st.state}; the next attempt resumes it"
            return self._outcome("failed", reason=why, code="ota.interrupted", keep=True)
        if st.installed_version != boot.version:
            self._save(replace(st, installed_version=boot.version))
        if self._env.read().upgrade_available:  # committed state, env not yet cleared
            self._env.write(BootEnv(boot_slot=boot.slot, bootlimit=self._env.read().bootlimit))
        return None

    def _on_new_slot(self, health: Callable[[], str | None]) -> Step:
        env = self._env.read()
        if not env.upgrade_available:
            if self._boot.fell_back:
                why = f"running {self._boot.version} without a passed health check"
                return self._outcome("failed", reason=why, code="ota.unverified_fallback")
            return self._commit(env)  # cut between the env's commit and the state's
        self._move("trial")
        try:
            self._faults.hit("trial")
            problem = health()
            if problem is None:
                self._faults.hit("committed")
        except TrustFleetError as exc:
            problem = exc.message
        if problem is not None:
            logger.warning("health check failed (boot %d): %s", env.bootcount, problem)
            self._emit(
                "rebooting", reason=f"health check failed: {problem}", code="ota.health.failed"
            )
            return Step(state=self._state, reboot=True)
        return self._commit(env)

    def _commit(self, env: BootEnv) -> Step:
        st = self._state
        self._env.write(BootEnv(boot_slot=self._boot.slot, bootlimit=env.bootlimit))
        version = self._boot.version
        floor = max(st.floor, version, key=_version_key)
        return self._outcome("committed", floor=floor, installed_version=version)

    # -- an update ---------------------------------------------------------------------------

    def update(self, request: UpdateRequest) -> Step:
        """Look for the release the request names (or the newest) and install it.

        Returns:
            The step taken: an outcome, or ``rebooting`` with ``reboot=True``.

        Raises:
            Conflict: An update is already in progress (code ``ota.busy``).
        """
        if self._state.in_progress:
            raise Conflict(
                f"an update is in progress ({self._state.state})",
                hint="wait for its outcome",
                code="ota.busy",
            )
        try:
            return self._update(request)
        except TrustFleetError as exc:
            return self._fail(exc)
        except OSError as exc:
            return self._fail(Unavailable(f"storage error: {exc}", code="ota.storage"))

    def _update(self, request: UpdateRequest) -> Step:
        installed = self._boot.version
        self._move(
            "checking",
            campaign=request.campaign,
            version=request.version,
            from_version=installed,
            target_slot=None,
            from_slot=None,
            delta=None,
        )
        repo = self._repository()
        repo.refresh()
        chosen = choose_manifest(
            repo,
            model=self._fuses.model,
            version=request.version,
            max_bytes=self._limits.max_manifest_bytes,
        )
        if isinstance(chosen, Refusal):
            return self._refuse(chosen)
        data, manifest = fetch_manifest(
            repo, chosen, model=self._fuses.model, max_bytes=self._limits.max_manifest_bytes
        )
        refusal = check_policy(
            manifest,
            fuses=self._fuses,
            installed=installed,
            floor=self._state.floor,
            max_image_bytes=self._limits.max_image_bytes,
        ) or check_builder(
            repo,
            manifest,
            allowed_builders=self._limits.allowed_builders,
            max_bytes=self._limits.max_provenance_bytes,
        )
        if refusal is not None:
            return self._refuse(refusal, version=manifest.version)
        return self._install(repo, manifest, data)

    def _install(self, repo: Repository, manifest: ReleaseManifest, data: bytes) -> Step:
        active = self._boot.slot
        target = other_slot(active)
        delta = self._usable_delta(manifest)
        self._move(
            "downloading",
            version=manifest.version,
            target_slot=target,
            from_slot=active,
            delta=delta is not None,
        )
        if delta is None or not self._try_delta(repo, manifest, delta, target):
            image = matching_target(
                repo,
                manifest.image.target,
                length=manifest.image.length,
                sha256=manifest.image.sha256,
            )
            source = repo.download(image, progress=self._progress(manifest))
            self._move("installing", delta=False)
            write_image(
                self._slots, target, source=source, image=manifest.image, faults=self._faults
            )
        self._complete_slot(manifest, data, target)
        self._move("installed")
        # Sealed storage: the data key must also open in the new slot's boot (docs/attestation.md).
        current = self._slots.manifest_bytes(self._boot.slot, max_bytes=MAX_MANIFEST_BYTES)
        reseal_for(self._layout.directory, model=self._fuses.model,
                   current_manifest=current or b"", next_manifest=data)  # fmt: skip
        env = self._env.read()
        self._env.write(
            BootEnv(boot_slot=target, upgrade_available=True, bootcount=0, bootlimit=env.bootlimit)
        )
        self._move("rebooting")
        return Step(state=self._state, reboot=True)

    def _usable_delta(self, manifest: ReleaseManifest) -> DeltaRef | None:
        data = self._slots.manifest_bytes(self._boot.slot, max_bytes=MAX_MANIFEST_BYTES)
        if data is None:
            return None
        active = parse_manifest(data)  # verified by the bootloader at this boot
        return manifest.delta_from(active.version, active.image.sha256)

    def _try_delta(
        self, repo: Repository, manifest: ReleaseManifest, delta: DeltaRef, target: Slot
    ) -> bool:
        try:
            found = matching_target(repo, delta.target, length=delta.length, sha256=delta.sha256)
            source = repo.download(found)
            self._move("installing", delta=True)
            write_delta(
                self._slots,
                target,
                old_image=self._slots.image_path(self._boot.slot),
                delta_file=source,
                image=manifest.image,
                faults=self._faults,
                max_output_bytes=self._limits.max_image_bytes,
            )
        except (TrustFleetError, OSError) as exc:
            why = exc.message if isinstance(exc, TrustFleetError) else str(exc)
            logger.warning(
                "delta from %s failed (%s): using the full image", delta.from_version, why
            )
            self._move(
                "downloading", delta=False, reason=f"delta failed: {why}", code="ota.delta.failed"
            )
            return False
        return True

    def _complete_slot(self, manifest: ReleaseManifest, data: bytes, slot: Slot) -> None:
        self._slots.complete(slot, manifest=data)
        key = fused_boot_key(self._layout.directory, self._fuses)
        verdict = verify_slot(self._slots, slot, fuses=self._fuses, boot_key_pem=key)
        if not verdict.ok or verdict.version != manifest.version:
            self._slots.invalidate(slot)
            raise VerificationFailed(
                f"release {manifest.version} would not boot: {verdict.reason}",
                hint="the release's boot signature or image is wrong; publish a fixed release",
                code="ota.boot.invalid",
            )

    def _progress(self, manifest: ReleaseManifest) -> Callable[[int, int], None]:
        def emit(held: int, total: int) -> None:
            self._emit("downloading", bytes=held, total=total)

        del manifest
        return ProgressThrottle(steps=self._limits.progress_reports, emit=emit)

    # -- outcomes and transitions ----------------------------------------------------------

    def _fail(self, exc: TrustFleetError) -> Step:
        st = self._state
        if st.state == "rebooting" and st.from_slot is not None:  # env switched: switch back
            env = self._env.read()
            self._env.write(BootEnv(boot_slot=st.from_slot, bootlimit=env.bootlimit))
        logger.warning("update failed in %s: %s", st.state, exc.one_line())
        return self._outcome("failed", reason=exc.message, code=exc.code or "ota.failed", keep=True)

    def _refuse(self, refusal: Refusal, *, version: str | None = None) -> Step:
        st = self._state
        return self._outcome(
            refusal.state, reason=refusal.reason, code=refusal.code, version=version or st.version
        )

    def _outcome(self, state: State, *, keep: bool = False, **changes: object) -> Step:
        self._move(state, **changes)
        if not keep:
            shutil.rmtree(self._layout.downloads, ignore_errors=True)
        return Step(state=self._state)

    def _move(self, state: State, **changes: object) -> None:
        self._save(self._state.moved(state, now=self._now(), **changes))
        if state in REPORTED:
            self._emit(state)
        if state not in ("trial", "committed"):  # those fault points are in the health check
            self._faults.hit(state)

    def _save(self, state: OtaState) -> None:
        save_state(self._layout.state_file, state)
        self._state = state

    def _emit(self, state: str, **changes: object) -> None:
        st = self._state
        fields: dict[str, object] = {
            "state": state,
            "campaign": st.campaign,
            "version": st.version,
            "from_version": st.from_version,
            "delta": st.delta,
            "reason": st.reason,
            "code": st.code,
        }
        fields.update(changes)
        self._report(OtaReport(**fields))  # type: ignore[arg-type]  # fields of OtaReport


def _version_key(text: str) -> tuple[int, int, int]:
    from trustfleet.ota.versions import parse_version  # noqa: PLC0415

    return parse_version(text)
