"""Response playbooks as data: which alert kinds and severities lead to which actions.

A playbook is TOML (docs/monitoring.md, "Alerts, playbooks and notifications")::

    [[rule]]
    kind = "monitor.volume.*"        # exact kind, a prefix glob ending in ".*", or "*"
    min_severity = "high"            # low | medium | high | critical
    actions = [
      { action = "notify", receivers = ["soc"] },     # receivers: names; absent = all
      { action = "quarantine", mode = "approval" },   # auto | approval (default approval)
    ]

Rules are tried in file order and the first whose ``kind`` and ``min_severity`` match decides
the actions (no merging): put specific rules before general ones. An alert no rule matches gets
no action. This module is pure: it parses and plans; ``services/alerts.py`` acts.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from trustfleet.errors import InvalidInput
from trustfleet.monitoring.records import SEVERITIES, Severity

__all__ = [
    "ACTIONS",
    "DEFAULT_PLAYBOOK_TOML",
    "MAX_ACTIONS_PER_RULE",
    "MAX_PLAYBOOK_BYTES",
    "MAX_RULES",
    "MODES",
    "Action",
    "Mode",
    "PlannedAction",
    "Playbook",
    "PlaybookRule",
    "default_playbook",
    "load_playbooks",
]

Action = Literal["notify", "reattest", "quarantine", "revoke"]
Mode = Literal["auto", "approval"]
ACTIONS: Final[tuple[Action, ...]] = ("notify", "reattest", "quarantine", "revoke")
MODES: Final[tuple[Mode, ...]] = ("auto", "approval")

MAX_PLAYBOOK_BYTES: Final = 64 * 1024
"""Largest playbook file read."""
MAX_RULES: Final = 256
MAX_ACTIONS_PER_RULE: Final = 8
MAX_RECEIVERS: Final = 32
_MAX_KIND_CHARS: Final = 64
_CODE: Final = "monitor.playbook.invalid"

DEFAULT_PLAYBOOK_TOML: Final = """\
# The built-in playbook: every alert is sent to every configured receiver; a critical alert
# also asks an operator to approve quarantining the device. Nothing happens automatically.

[[rule]]
kind = "*"
min_severity = "critical"
actions = [
  { action = "notify" },
  { action = "quarantine", mode = "approval" },
]

[[rule]]
kind = "*"
min_severity = "low"
actions = [{ action = "notify" }]
"""


@dataclass(frozen=True, slots=True)
class PlannedAction:
    """One action a playbook asks for an alert.

    Attributes:
        action: ``notify``, ``reattest``, ``quarantine`` or ``revoke``.
        mode: ``auto`` (at once) or ``approval`` (waits for an operator).
        receivers: For ``notify``: the receivers by name; empty means every receiver.
    """

    action: Action
    mode: Mode
    receivers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PlaybookRule:
    """One rule: alerts of a kind pattern at or above a severity get these actions."""

    kind: str
    min_severity: Severity
    actions: tuple[PlannedAction, ...]

    def matches(self, kind: str, severity: Severity) -> bool:
        """Whether an alert of this kind and severity falls under the rule."""
        if SEVERITIES.index(severity) < SEVERITIES.index(self.min_severity):
            return False
        if self.kind == "*":
            return True
        if self.kind.endswith(".*"):
            return kind.startswith(self.kind[:-1])
        return kind == self.kind


@dataclass(frozen=True, slots=True)
class Playbook:
    """Rules in order; the first match decides.

    Attributes:
        rules: The rules, in file order.
        source: Where they came from (a path or ``built-in``), for messages.
    """

    rules: tuple[PlaybookRule, ...]
    source: str = "built-in"

    def plan(self, kind: str, severity: Severity) -> tuple[PlannedAction, ...]:
        """The actions for an alert: those of the first matching rule (none when none match)."""
        for rule in self.rules:
            if rule.matches(kind, severity):
                return rule.actions
        return ()

    def receivers(self) -> frozenset[str]:
        """Every receiver named by a rule."""
        return frozenset(r for rule in self.rules for a in rule.actions for r in a.receivers)

    def check_receivers(self, known: Collection[str]) -> None:
        """Refuse receivers that the settings do not define.

        Raises:
            InvalidInput: A rule names an unknown receiver (``monitor.playbook.invalid``).
        """
        for i, rule in enumerate(self.rules):
            for j, planned in enumerate(rule.actions):
                for name in planned.receivers:
                    if name not in known:
                        where = f"rule[{i}].actions[{j}].receivers"
                        have = ", ".join(sorted(known)) or "none"
                        raise _invalid(
                            self.source, where, f"unknown receiver {name!r} (configured: {have})"
                        )


def default_playbook() -> Playbook:
    """The built-in playbook (:data:`DEFAULT_PLAYBOOK_TOML`)."""
    return load_playbooks(DEFAULT_PLAYBOOK_TOML, source="built-in")


def load_playbooks(text: str, *, source: str) -> Playbook:
    """Parse and validate a playbook.

    Args:
        text: The TOML text.
        source: Its name (a path) for messages.

    Returns:
        The playbook.

    Raises:
        InvalidInput: Not TOML, too large, or a key is missing or wrong; the message names the
            key (``monitor.playbook.invalid``).
    """
    if len(text.encode("utf-8", "replace")) > MAX_PLAYBOOK_BYTES:
        raise _invalid(source, "(file)", f"larger than {MAX_PLAYBOOK_BYTES} bytes")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _invalid(source, "(file)", f"not valid TOML: {exc}") from exc
    unknown = sorted(set(doc) - {"rule"})
    if unknown:
        raise _invalid(source, unknown[0], "unknown key (a playbook has only [[rule]] tables)")
    rules = doc.get("rule", [])
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise _invalid(source, "rule", "must be an array of tables ([[rule]])")
    if len(rules) > MAX_RULES:
        raise _invalid(source, "rule", f"more than {MAX_RULES} rules")
    parsed = tuple(_rule(r, where=f"rule[{i}]", source=source) for i, r in enumerate(rules))
    return Playbook(rules=parsed, source=source)


def _invalid(source: str, key: str, problem: str) -> InvalidInput:
    return InvalidInput(
        f"{source}: {key}: {problem}",
        hint="see 'Alerts, playbooks and notifications' in docs/monitoring.md",
        code=_CODE,
    )


def _rule(raw: Mapping[str, Any], *, where: str, source: str) -> PlaybookRule:
    unknown = sorted(set(raw) - {"kind", "min_severity", "actions"})
    if unknown:
        raise _invalid(source, f"{where}.{unknown[0]}", "unknown key")
    kind = raw.get("kind")
    if not isinstance(kind, str) or not _kind_ok(kind):
        raise _invalid(
            source,
            f"{where}.kind",
            "must be a kind, a prefix glob such as 'monitor.volume.*', or '*'",
        )
    severity = raw.get("min_severity", "low")
    if severity not in SEVERITIES:
        raise _invalid(source, f"{where}.min_severity", f"must be one of {', '.join(SEVERITIES)}")
    actions = raw.get("actions")
    if not isinstance(actions, list) or not actions or len(actions) > MAX_ACTIONS_PER_RULE:
        raise _invalid(
            source, f"{where}.actions", f"must be a list of 1 to {MAX_ACTIONS_PER_RULE} tables"
        )
    planned = tuple(
        _action(a, where=f"{where}.actions[{j}]", source=source) for j, a in enumerate(actions)
    )
    names = [p.action for p in planned]
    if len(names) != len(set(names)):
        raise _invalid(source, f"{where}.actions", "names an action twice")
    return PlaybookRule(kind=kind, min_severity=severity, actions=planned)


def _kind_ok(kind: str) -> bool:
    if kind == "*":
        return True
    if not 0 < len(kind) <= _MAX_KIND_CHARS or not kind.isascii():
        return False
    body = kind[:-2] if kind.endswith(".*") else kind
    parts = body.split(".")
    return all(p and all(c.islower() or c.isdigit() or c in "_-" for c in p) for p in parts)


def _action(raw: object, *, where: str, source: str) -> PlannedAction:
    if not isinstance(raw, dict):
        raise _invalid(source, where, 'must be a table such as { action = "notify" }')
    unknown = sorted(set(raw) - {"action", "mode", "receivers"})
    if unknown:
        raise _invalid(source, f"{where}.{unknown[0]}", "unknown key")
    action = raw.get("action")
    if action not in ACTIONS:
        raise _invalid(source, f"{where}.action", f"must be one of {', '.join(ACTIONS)}")
    mode = raw.get("mode", "auto" if action == "notify" else "approval")
    if mode not in MODES:
        raise _invalid(source, f"{where}.mode", f"must be one of {', '.join(MODES)}")
    if action == "notify" and mode != "auto":
        raise _invalid(source, f"{where}.mode", "notify is always auto")
    receivers = _receivers(raw.get("receivers", []), action=action, where=where, source=source)
    return PlannedAction(action=action, mode=mode, receivers=receivers)


def _receivers(raw: object, *, action: str, where: str, source: str) -> tuple[str, ...]:
    key = f"{where}.receivers"
    if not isinstance(raw, list) or len(raw) > MAX_RECEIVERS:
        raise _invalid(source, key, f"must be a list of at most {MAX_RECEIVERS} names")
    if raw and action != "notify":
        raise _invalid(source, key, "only notify takes receivers")
    names: Sequence[object] = raw
    for name in names:
        if not isinstance(name, str) or not 0 < len(name) <= 32:
            raise _invalid(source, key, "each receiver is a name of 1 to 32 characters")
    return tuple(str(n) for n in names)
