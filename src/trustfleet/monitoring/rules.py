"""Detection rules as data: per-model allow-lists and static thresholds, written in TOML.

An operator edits a file like :data:`DEFAULT_RULES_TOML`; :func:`load_rules` validates it and
names the offending key in every error. ``[defaults]`` applies to every model; a
``[models."<model>"]`` table overrides it key by key (a model's threshold on a metric replaces
the default one on that metric, the others are kept).
"""

from __future__ import annotations

import ipaddress
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from trustfleet.errors import InvalidInput
from trustfleet.monitoring.records import DEVICE_NUMBERS, SERVICE_NUMBERS, SEVERITIES, Severity

__all__ = [
    "DEFAULT_RULES_TOML",
    "MAX_RULES_BYTES",
    "ModelRules",
    "RuleSet",
    "Threshold",
    "default_rules",
    "load_rules",
]

MAX_RULES_BYTES: Final = 1_000_000
"""The largest rules file accepted."""
_MAX_LIST: Final = 10_000
_MAX_MODELS: Final = 1_000
_MAX_THRESHOLDS: Final = 200
_CODE: Final = "monitor.rules.invalid"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NUMBERS: Final = frozenset(DEVICE_NUMBERS) | frozenset(SERVICE_NUMBERS)
_ALLOW_KEYS: Final = ("listening_tcp_ports", "listening_udp_ports", "destinations", "executables")
_TOP_KEYS: Final = frozenset({"version", "defaults", "models"})
_RULE_KEYS: Final = frozenset(
    {"allow", "thresholds", "watched_files", "suspicious_remote_ports", "suspicious_severity"}
)
_WATCH_KEYS: Final = frozenset({"paths", "immutable", "severity"})

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Threshold:
    """A static bound on one numeric metric of a window.

    Attributes:
        metric: A name of ``DEVICE_NUMBERS`` or ``SERVICE_NUMBERS``.
        max: Raise when the value is above it (None: no upper bound).
        min: Raise when the value is below it (None: no lower bound).
        severity: The finding's severity.
    """

    metric: str
    max: float | None
    min: float | None
    severity: Severity


@dataclass(frozen=True)
class ModelRules:
    """The rules of one model, defaults merged in. An allow-list of None is not enforced.

    Attributes:
        listening_tcp_ports: Ports a device may listen on (TCP).
        listening_udp_ports: Ports a device may listen on (UDP).
        destinations: Networks a device may connect to.
        executables: sha256 (hex) of the executables a device may run.
        thresholds: Static thresholds by metric name.
        watched_paths: The watched files considered (empty: every reported one).
        watched_immutable: A watched file's hash must never change.
        watched_severity: The severity of a change.
        suspicious_remote_ports: Remote ports that are always suspicious (telnet: 23, 2323).
        suspicious_severity: The severity of a connection to one of them.
    """

    listening_tcp_ports: frozenset[str] | None = None
    listening_udp_ports: frozenset[str] | None = None
    destinations: tuple[Network, ...] | None = None
    executables: frozenset[str] | None = None
    thresholds: Mapping[str, Threshold] = field(default_factory=dict)
    watched_paths: frozenset[str] = frozenset()
    watched_immutable: bool = True
    watched_severity: Severity = "critical"
    suspicious_remote_ports: frozenset[str] = frozenset()
    suspicious_severity: Severity = "high"

    def destination_allowed(self, address: str) -> bool:
        """Whether an address is in the destination allow-list (True when none is set)."""
        if self.destinations is None:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.destinations)


@dataclass(frozen=True)
class RuleSet:
    """Validated rules: the defaults and the per-model overrides, each fully resolved."""

    defaults: ModelRules
    models: Mapping[str, ModelRules] = field(default_factory=dict)
    source: str = "<rules>"

    def for_model(self, model: str) -> ModelRules:
        """The rules that apply to a model (the defaults when it has none of its own)."""
        return self.models.get(model, self.defaults)


DEFAULT_RULES_TOML: Final = """\
# TrustFleet detection rules (docs/monitoring.md#detection). [defaults] applies to every model;
# [models."<model>"] overrides it key by key. Allow-lists are enforced only where written.
version = 1

[defaults]
# Connections to these remote ports are always suspicious (telnet: Mirai-style scanning).
suspicious_remote_ports = [23, 2323]
suspicious_severity = "high"

[defaults.watched_files]
# Watched files must never change (paths = [] watches every file the agent reports).
paths = []
immutable = true
severity = "critical"

# Static thresholds, per window of the metric's source.
[[defaults.thresholds]]
metric = "failed-logins"
max = 20
severity = "high"

[[defaults.thresholds]]
metric = "svc-authz-failures"
max = 20
severity = "medium"

[[defaults.thresholds]]
metric = "svc-connect-refusals"
max = 10
severity = "high"

[[defaults.thresholds]]
metric = "svc-est-refusals"
max = 3
severity = "medium"

[[defaults.thresholds]]
metric = "svc-attestation-findings"
max = 0
severity = "high"

# Example of a model's own rules:
# [models."gateway-v2"]
# allow.listening_tcp_ports = [22, 8883]
# allow.destinations = ["10.0.0.0/8", "203.0.113.7"]
# allow.executables = ["<sha256 hex>"]
"""


def _fail(key: str, problem: str, source: str) -> InvalidInput:
    return InvalidInput(
        f"{source}: {key}: {problem}",
        hint="fix the rules file (docs/monitoring.md#detection lists every key)",
        code=_CODE,
    )


def _severity(value: object, key: str, source: str) -> Severity:
    if not isinstance(value, str) or value not in SEVERITIES:
        raise _fail(key, f"must be one of {', '.join(SEVERITIES)}", source)
    return value


def _list(value: object, key: str, source: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(key, "must be a list", source)
    if len(value) > _MAX_LIST:
        raise _fail(key, f"has more than {_MAX_LIST} entries", source)
    return value


def _ports(value: object, key: str, source: str) -> frozenset[str]:
    ports = set()
    for item in _list(value, key, source):
        if isinstance(item, bool) or not isinstance(item, int) or not 0 < item < 65536:
            raise _fail(key, f"{item!r} is not a port number (1..65535)", source)
        ports.add(str(item))
    return frozenset(ports)


def _networks(value: object, key: str, source: str) -> tuple[Network, ...]:
    nets = []
    for item in _list(value, key, source):
        if not isinstance(item, str):
            raise _fail(key, f"{item!r} must be a string (an address or a CIDR network)", source)
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise _fail(key, f"{item!r} is not an address or a CIDR network", source) from None
    return tuple(nets)


def _hashes(value: object, key: str, source: str) -> frozenset[str]:
    items = _list(value, key, source)
    for item in items:
        if not isinstance(item, str) or not _SHA256.match(item):
            raise _fail(key, f"{item!r} is not a sha256 in lower-case hex", source)
    return frozenset(items)


def _table(value: object, key: str, source: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(key, "must be a table", source)
    for name in value:
        if name not in allowed:
            raise _fail(
                f"{key}.{name}", f"unknown key (known: {', '.join(sorted(allowed))})", source
            )
    return value


def _number(value: object, key: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(key, "must be a number", source)
    return float(value)


def _threshold(raw: object, key: str, source: str) -> Threshold:
    table = _table(raw, key, source, frozenset({"metric", "max", "min", "severity"}))
    metric = table.get("metric")
    if not isinstance(metric, str) or metric not in _NUMBERS:
        raise _fail(f"{key}.metric", f"{metric!r} is not a numeric metric name", source)
    high = _number(table["max"], f"{key}.max", source) if "max" in table else None
    low = _number(table["min"], f"{key}.min", source) if "min" in table else None
    if high is None and low is None:
        raise _fail(key, "needs max or min", source)
    if high is not None and low is not None and low > high:
        raise _fail(key, "min is above max", source)
    severity = _severity(table.get("severity", "medium"), f"{key}.severity", source)
    return Threshold(metric=metric, max=high, min=low, severity=severity)


def _thresholds(raw: object, key: str, source: str) -> dict[str, Threshold]:
    items = _list(raw, key, source)
    if len(items) > _MAX_THRESHOLDS:
        raise _fail(key, f"has more than {_MAX_THRESHOLDS} thresholds", source)
    out: dict[str, Threshold] = {}
    for i, item in enumerate(items):
        rule = _threshold(item, f"{key}[{i}]", source)
        if rule.metric in out:
            raise _fail(f"{key}[{i}].metric", f"{rule.metric} has a threshold already", source)
        out[rule.metric] = rule
    return out


def _allow(raw: object, key: str, source: str, base: ModelRules) -> ModelRules:
    table = _table(raw, key, source, frozenset(_ALLOW_KEYS))
    changes: dict[str, Any] = {}
    for name in ("listening_tcp_ports", "listening_udp_ports"):
        if name in table:
            changes[name] = _ports(table[name], f"{key}.{name}", source)
    if "destinations" in table:
        changes["destinations"] = _networks(table["destinations"], f"{key}.destinations", source)
    if "executables" in table:
        changes["executables"] = _hashes(table["executables"], f"{key}.executables", source)
    return replace(base, **changes)


def _watch(raw: object, key: str, source: str, base: ModelRules) -> ModelRules:
    table = _table(raw, key, source, _WATCH_KEYS)
    changes: dict[str, Any] = {}
    if "paths" in table:
        paths = _list(table["paths"], f"{key}.paths", source)
        if not all(isinstance(p, str) and p.startswith("/") for p in paths):
            raise _fail(f"{key}.paths", "must be absolute paths", source)
        changes["watched_paths"] = frozenset(paths)
    if "immutable" in table:
        if not isinstance(table["immutable"], bool):
            raise _fail(f"{key}.immutable", "must be true or false", source)
        changes["watched_immutable"] = table["immutable"]
    if "severity" in table:
        changes["watched_severity"] = _severity(table["severity"], f"{key}.severity", source)
    return replace(base, **changes)


def _model_rules(raw: object, key: str, source: str, base: ModelRules) -> ModelRules:
    table = _table(raw, key, source, _RULE_KEYS)
    rules = base
    if "allow" in table:
        rules = _allow(table["allow"], f"{key}.allow", source, rules)
    if "watched_files" in table:
        rules = _watch(table["watched_files"], f"{key}.watched_files", source, rules)
    if "suspicious_remote_ports" in table:
        ports = _ports(table["suspicious_remote_ports"], f"{key}.suspicious_remote_ports", source)
        rules = replace(rules, suspicious_remote_ports=ports)
    if "suspicious_severity" in table:
        sev = _severity(table["suspicious_severity"], f"{key}.suspicious_severity", source)
        rules = replace(rules, suspicious_severity=sev)
    if "thresholds" in table:
        merged = dict(base.thresholds)
        merged.update(_thresholds(table["thresholds"], f"{key}.thresholds", source))
        rules = replace(rules, thresholds=merged)
    return rules


def load_rules(text: str, *, source: str) -> RuleSet:
    """Parse and validate detection rules.

    Args:
        text: The TOML text.
        source: Where it came from (a file name), named in errors.

    Returns:
        The rules, each model's resolved against the defaults.

    Raises:
        InvalidInput: ``monitor.rules.invalid``, naming the key and the problem.
    """
    if len(text.encode("utf-8", errors="replace")) > MAX_RULES_BYTES:
        raise _fail("(file)", f"is larger than {MAX_RULES_BYTES} bytes", source)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _fail("(syntax)", f"not valid TOML ({exc})", source) from exc
    _table(raw, "(top)", source, _TOP_KEYS)
    if raw.get("version", 1) != 1:
        raise _fail("version", "must be 1", source)
    defaults = _model_rules(raw.get("defaults", {}), "defaults", source, ModelRules())
    models_raw = raw.get("models", {})
    if not isinstance(models_raw, dict):
        raise _fail("models", "must be a table of models", source)
    if len(models_raw) > _MAX_MODELS:
        raise _fail("models", f"has more than {_MAX_MODELS} models", source)
    models = {
        name: _model_rules(table, f"models.{name}", source, defaults)
        for name, table in models_raw.items()
    }
    return RuleSet(defaults=defaults, models=models, source=source)


def default_rules() -> RuleSet:
    """The built-in rules (:data:`DEFAULT_RULES_TOML`)."""
    return load_rules(DEFAULT_RULES_TOML, source="<built-in rules>")
