"""The monitor: one process of ``server run`` (``monitor#0``) that scores metrics windows.

Every ``[monitoring] poll_s`` it reads the windows stored after its cursor (table
``monitor_cursor``, name :data:`CURSOR`), in id order and in bounded pages, scores them with
the fleet detector (:class:`trustfleet.monitoring.pipeline.FleetDetector`, rules from
``[monitoring] rules`` or the built-in ones), records the findings as alerts (which runs the
playbook: :func:`trustfleet.services.alerts.record_findings`), then advances the cursor. It
also sends due notifications (:func:`trustfleet.services.notify.deliver_due`) and, every
``service_window_s``, builds the service-side windows
(:func:`trustfleet.services.service_signals.collect_service_windows`).

On start it replays the windows of the last learning period up to the cursor into the
detector and discards their findings, so a restarted monitor neither learns the fleet again
nor raises again what it already raised. The cursor moves only after the alerts of its page
are committed: a crash in between scores the page again, and alerts join the open ones
(``alert_quiet_s``), so nothing is lost and nothing is raised twice. When the rules file
changes, the detector is rebuilt with it and the learning period replayed again. State is
bounded by the detector's ``max_devices``; a page is at most :data:`PAGE` windows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from trustfleet.errors import Config, TrustFleetError
from trustfleet.monitoring import Detector, Finding, MetricsRecord
from trustfleet.monitoring.rules import default_rules, load_rules
from trustfleet.server._worker_main import run_worker
from trustfleet.services.alerts import record_findings
from trustfleet.services.notify import deliver_due
from trustfleet.services.runtime import Runtime
from trustfleet.services.service_signals import collect_service_windows

__all__ = [
    "CURSOR",
    "PAGE",
    "MonitorHooks",
    "MonitorWorker",
    "StepReport",
    "build_detector",
    "monitor_process_main",
]

logger = logging.getLogger(__name__)

CURSOR: Final = "monitor"
"""The monitor's row in ``monitor_cursor``."""
PAGE: Final = 1000
"""Windows read and scored per transaction."""
_REPLAY_SKEW: Final = timedelta(hours=1)
MAX_PAGES_PER_STEP: Final = 20
"""Pages scored in one step before notifications get their turn."""


_FindingsRecorder = Callable[..., Sequence[object]]


@dataclass(frozen=True)
class MonitorHooks:
    """The services the monitor calls (tests may pass their own)."""

    record_findings: _FindingsRecorder = record_findings
    deliver_due: Callable[..., object] = deliver_due
    collect_service_windows: Callable[..., int] = collect_service_windows


def build_detector(rt: Runtime) -> Detector:
    """The fleet detector per ``[monitoring]`` (learning period, device bound, rules file).

    Raises:
        Config: The rules file cannot be read or is invalid.
    """
    settings = rt.settings.monitoring
    if settings.rules:
        path = rt.settings.path(settings.rules)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise Config(f"cannot read the rules {path}: {exc.strerror}",
                         code="monitor.rules.unreadable") from exc  # fmt: skip
        try:
            rules = load_rules(text, source=str(path))
        except TrustFleetError as exc:
            raise Config(exc.one_line(), hint="check it with 'trustfleet monitor rules check'",
                         code="monitor.rules.invalid") from exc  # fmt: skip
    else:
        rules = default_rules()
    # numpy and scikit-learn load in monitor#0 only, not in server run's parent process.
    from trustfleet.monitoring.pipeline import DetectorConfig, FleetDetector  # noqa: PLC0415

    config = DetectorConfig(
        learning_s=settings.learning_hours * 3600, max_devices=settings.max_devices
    )
    return FleetDetector(config, rules=rules)


@dataclass
class StepReport:
    """What one step did."""

    windows: int = 0
    findings: int = 0
    alerts: int = 0
    cursor: int = 0


class MonitorWorker:
    """Replay, then score new windows, record alerts, notify, build service windows.

    Args:
        rt: The runtime.
        detector: The detector (default: :func:`build_detector`).
        hooks: The services it calls (default: as installed).
        now: The clock.
    """

    def __init__(
        self,
        rt: Runtime,
        *,
        detector: Detector | None = None,
        hooks: MonitorHooks | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.rt = rt
        self._own_detector = detector is None
        self._rules_stamp = self._stamp()
        self.detector: Detector = detector if detector is not None else build_detector(rt)
        self.hooks = hooks if hooks is not None else MonitorHooks()
        self.now = now
        self.cursor = 0
        self.replayed = 0
        self._next_service_window: datetime | None = None

    def replay(self) -> int:
        """Feed the last learning period's windows up to the cursor; discard their findings."""
        settings = self.rt.settings.monitoring
        since = self.now() - timedelta(hours=settings.learning_hours)
        with self.rt.uow.begin() as tx:
            self.cursor = tx.monitor_metrics.cursor(CURSOR)
            # Windows ending in the period were received after its start, give or take the
            # devices' clock skew: read from there, not from the first window kept.
            after = tx.monitor_metrics.first_id_since(since - _REPLAY_SKEW)
        count = 0
        while after < self.cursor:
            with self.rt.uow.begin() as tx:
                page = tx.monitor_metrics.after(after, limit=PAGE)
            page = [(i, r) for i, r in page if i <= self.cursor]
            if not page:
                break
            after = page[-1][0]
            records = [r for _, r in page if r.end >= since]
            self._observe(records)
            count += len(records)
        self.replayed = count
        logger.info("monitor replayed %d windows up to %d", count, self.cursor)
        return count

    def _stamp(self) -> tuple[int, int] | None:
        rules = self.rt.settings.monitoring.rules
        try:
            st = self.rt.settings.path(rules).stat() if rules else None
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size) if st is not None else None

    def reload_if_changed(self) -> bool:
        """Rebuild the detector (and replay) when the rules file changed; whether it did.

        A rules file that does not load keeps the running detector (logged).
        """
        stamp = self._stamp()
        if not self._own_detector or stamp == self._rules_stamp:
            return False
        self._rules_stamp = stamp
        try:
            detector = build_detector(self.rt)
        except Config as exc:
            logger.error("new rules refused, the running ones stay: %s", exc.one_line())
            return False
        self.detector = detector
        self.replay()
        logger.info("monitor: rules reloaded")
        return True

    def _observe(self, records: Sequence[MetricsRecord]) -> list[Finding]:
        many = getattr(self.detector, "observe_many", None)
        if many is not None:
            return list(many(records))
        return [f for record in records for f in self.detector.observe(record)]

    def step(self) -> StepReport:
        """Score what arrived since the cursor (bounded), then notify and collect."""
        self.reload_if_changed()
        report = StepReport(cursor=self.cursor)
        for _ in range(MAX_PAGES_PER_STEP):
            with self.rt.uow.begin() as tx:
                page = tx.monitor_metrics.after(self.cursor, limit=PAGE)
            if not page:
                break
            findings = self._observe([r for _, r in page])
            report.windows += len(page)
            report.findings += len(findings)
            now = self.now()
            if findings:
                report.alerts += len(self.hooks.record_findings(self.rt, findings, now=now))
            with self.rt.uow.begin() as tx:  # after the alerts are committed (module doc)
                tx.monitor_metrics.set_cursor(CURSOR, page[-1][0], now=now)
            self.cursor = report.cursor = page[-1][0]
        self._side_jobs()
        return report

    def _side_jobs(self) -> None:
        now = self.now()
        self._guard("notifications", lambda: self.hooks.deliver_due(self.rt, now=now))
        window = timedelta(seconds=self.rt.settings.monitoring.service_window_s)
        if self._next_service_window is None or now >= self._next_service_window:
            self._next_service_window = now + window
            collect = self.hooks.collect_service_windows
            self._guard("service windows", lambda: collect(self.rt, now=now))

    def _guard(self, what: str, call: Callable[[], object]) -> None:
        try:
            call()
        except TrustFleetError as exc:
            logger.warning("monitor %s failed: %s", what, exc.one_line())

    def run(self, stop: threading.Event) -> None:
        """Replay, then step every ``poll_s`` until ``stop``; a failed step is retried."""
        self.replay()
        poll_s = self.rt.settings.monitoring.poll_s
        while not stop.is_set():
            try:
                report = self.step()
            except TrustFleetError as exc:
                logger.warning("monitor step failed: %s", exc.one_line())
            else:
                if report.alerts:
                    logger.info("monitor: %s", report)
            stop.wait(poll_s)


def monitor_process_main(home: str) -> None:
    """Entry point of ``monitor#0`` (``multiprocessing`` spawn target)."""
    run_worker(home, lambda rt, stop: MonitorWorker(rt).run(stop), role="monitor")
