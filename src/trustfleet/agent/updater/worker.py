"""The updater inside the agent: one background thread, reports through the agent's outbox.

The MQTT link keeps working while an update runs: the engine runs on its own thread, its
reports queue here and the agent's loop publishes them (``ota/status``). A reboot the engine
asks for is a flag the agent's loop obeys (it flushes its outbox and exits with
:data:`REBOOT_EXIT_CODE`; the boot loop then boots again through the bootloader).

Nothing heavy is imported until an update runs: the engine, python-tuf, ``cryptography`` and
``zstandard`` load on the worker's thread, keeping the agent's steady-state memory low.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from trustfleet.agent.platform.bootloader import BootResult
from trustfleet.agent.platform.faults import NO_FAULTS, Faults
from trustfleet.agent.platform.layout import DeviceLayout
from trustfleet.agent.settings import DeviceSettings, ota_urls
from trustfleet.configfile.options import options_of
from trustfleet.errors import TrustFleetError

if TYPE_CHECKING:
    from trustfleet.agent.updater._reports import OtaReport
    from trustfleet.agent.updater._state import OtaState
    from trustfleet.agent.updater.engine import Repository, Step, UpdateEngine, UpdateRequest

__all__ = ["REBOOT_EXIT_CODE", "OtaWorker", "UpdateArgs", "UpdateJob"]

logger = logging.getLogger(__name__)

REBOOT_EXIT_CODE = 100
"""The agent's exit code that asks the boot loop to boot again."""

_CAMPAIGN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_MAX_VERSION_CHARS = 40


@dataclass(frozen=True, slots=True)
class UpdateJob:
    """A one-shot run of the updater: recover after the boot, then ``request`` (if any)."""

    request: UpdateRequest | None = None


class UpdateArgs:
    """The honoured arguments of an ``update`` command: ``version`` and ``campaign`` only.

    Anything else (a URL, a path, a hash, bytes) is ignored; a version that is not a string
    is passed on as text and refused by the engine.
    """

    def __init__(self, args: dict[str, Any]) -> None:
        version, campaign = args.get("version"), args.get("campaign")
        self.version = None if version is None else str(version)[:_MAX_VERSION_CHARS]
        ok = isinstance(campaign, str) and _CAMPAIGN.fullmatch(campaign)
        self.campaign = campaign if ok and isinstance(campaign, str) else None
        self.ignored = sorted(str(k)[:32] for k in args if k not in ("version", "campaign"))


class OtaWorker:
    """Runs the update engine for the agent (see the module docstring).

    Args:
        settings: The device's settings.
        boot: What the bootloader booted (None: a device without a boot chain).
        now: The clock.
        notify: Called when a report is queued or the worker finishes (wakes the agent).
        link_connected: Whether the MQTT link is connected (for the health check).
        identity_ok: Whether the device holds a valid operational certificate.
        faults: Injected faults (the simulation's test seam; default none).
    """

    def __init__(
        self,
        settings: DeviceSettings,
        *,
        boot: BootResult | None,
        now: Callable[[], datetime],
        notify: Callable[[], None],
        link_connected: Callable[[], bool],
        identity_ok: Callable[[], bool],
        faults: Faults = NO_FAULTS,
    ) -> None:
        self.settings, self.boot, self._faults = settings, boot, faults
        self.layout = DeviceLayout(settings.directory)
        self._now, self._notify = now, notify
        self._link_connected, self._identity_ok = link_connected, identity_ok
        self._reports: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.reboot = threading.Event()
        self.finished = threading.Event()
        self.outcome: OtaState | None = None

    @property
    def busy(self) -> bool:
        """Whether the worker's thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, *, recover: bool, request: UpdateRequest | None) -> bool:
        """Recover after the boot and/or run an update, on the worker's thread.

        Returns:
            False if the worker is busy or the device has no boot chain.
        """
        with self._lock:  # commands arrive on the agent's loop and on awscrt's thread
            if self.boot is None or self.busy:
                return False
            self.finished.clear()
            self._thread = threading.Thread(
                target=self._run, args=(recover, request), name="ota-update", daemon=True
            )
            self._thread.start()
            return True

    def answer_update(self, command_id: str, args: dict[str, Any]) -> dict[str, Any]:
        """The ``cmd/result`` of an ``update`` command (accepted at once, or why not)."""
        from trustfleet.agent.updater.engine import UpdateRequest  # noqa: PLC0415

        parsed = UpdateArgs(args)
        if parsed.ignored:
            logger.warning("update command: ignored argument(s) %s", parsed.ignored)
        if self.boot is None:
            why = "this device has no A/B boot chain (no fuses.json or slots); updates are refused"
            self.queue_report(
                {
                    "state": "refused",
                    "campaign": parsed.campaign,
                    "version": parsed.version,
                    "reason": why,
                    "code": "ota.no_boot_chain",
                }
            )
            return {"id": command_id, "ok": False, "result": {}, "error": why}
        request = UpdateRequest(version=parsed.version, campaign=parsed.campaign)
        if not self.start(recover=False, request=request):
            return {
                "id": command_id,
                "ok": False,
                "result": {},
                "error": "an update is already running",
            }
        return {"id": command_id, "ok": True, "result": {"accepted": True}}

    def on_ota_command(self, raw: bytes, *, max_bytes: int) -> None:
        """A message on ``ota/cmd`` (campaigns): only ``update``, answered by reports only."""
        from trustfleet.agent._messages import Command, parse_command  # noqa: PLC0415

        command = parse_command(raw, max_bytes=max_bytes)
        if isinstance(command, Command) and command.name == "update":
            self.answer_update(command.id, command.args)
        else:
            logger.warning("ignored a message on ota/cmd (only 'update' is honoured there)")

    def queue_report(self, document: dict[str, Any]) -> None:
        """Queue a report for the agent to publish (fields as in :class:`OtaReport`)."""
        from trustfleet.agent.updater._reports import OtaReport  # noqa: PLC0415

        self._reports.put(OtaReport(**document).to_document())
        self._notify()

    def drain(self) -> list[dict[str, Any]]:
        """The reports queued since the last call."""
        out = []
        while True:
            try:
                out.append(self._reports.get_nowait())
            except queue.Empty:
                return out

    def health(self) -> str | None:
        """The health check of a new slot: None when healthy, else why not."""
        if self._faults.health_check is not None:
            return self._faults.health_check
        if not self._identity_ok():
            return "no valid operational certificate"
        timeout_s = self.settings.ota.health_timeout_s
        deadline = time.monotonic() + timeout_s
        while not self._link_connected():
            if time.monotonic() >= deadline:
                return f"no broker connection within {timeout_s:.0f}s"
            time.sleep(0.1)
        return None

    def _run(self, recover: bool, request: UpdateRequest | None) -> None:
        try:
            engine = self._engine()
            step = engine.recover(health=self.health) if recover else None
            if request is not None and _should_start(step, request):
                step = engine.update(request)
            self.outcome = step.state if step is not None else engine.state
            if step is not None and step.reboot:
                self.reboot.set()
        except TrustFleetError as exc:
            logger.error("update stopped: %s", exc.one_line())
            self.queue_report(
                {"state": "failed", "reason": exc.message, "code": exc.code or "ota.failed"}
            )
        except Exception:  # the thread must never die silently
            logger.exception("update stopped by an unexpected error")
            self.queue_report(
                {"state": "failed", "reason": "internal error", "code": "ota.internal"}
            )
        finally:
            self.finished.set()
            self._notify()

    def _engine(self) -> UpdateEngine:
        from trustfleet.agent.updater.engine import EngineLimits, UpdateEngine  # noqa: PLC0415

        assert self.boot is not None  # noqa: S101  # start() checks it
        return UpdateEngine(
            layout=self.layout,
            boot=self.boot,
            repository=self._repository,
            report=self._on_report,
            now=self._now,
            faults=self._faults.plan,
            limits=options_of(
                EngineLimits,
                self.settings.ota,
                allowed_builders=tuple(self.settings.ota.allowed_builders),
            ),
        )

    def _on_report(self, report: OtaReport) -> None:
        self._reports.put(report.to_document())
        self._notify()

    def _repository(self) -> Repository:
        from trustfleet.agent.updater.fetcher import device_fetcher  # noqa: PLC0415
        from trustfleet.agent.updater.tufclient import TufBounds, TufClient  # noqa: PLC0415

        ota = self.settings.ota
        metadata_url, targets_url = ota_urls(self.settings)
        bounds = options_of(TufBounds, ota, max_target_bytes=ota.max_image_bytes)
        return TufClient(
            metadata_dir=self.layout.tuf_metadata,
            metadata_url=metadata_url,
            targets_url=targets_url,
            download_dir=self.layout.downloads,
            fetcher=device_fetcher(self.settings),
            bounds=bounds,
        )


def _should_start(step: Step | None, request: UpdateRequest) -> bool:
    """After a recovery: start the request unless it just completed (or a reboot is due)."""
    if step is None:
        return True
    if step.reboot:
        return False
    state = step.state
    done = state.state == "committed" and request.version in (None, state.installed_version)
    return not done
