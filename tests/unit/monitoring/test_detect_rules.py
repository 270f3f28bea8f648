"""Detection rules: the built-in rules, per-model overrides, and a table of bad inputs."""

from __future__ import annotations

import pytest

from trustfleet.errors import InvalidInput
from trustfleet.monitoring.rules import (
    DEFAULT_RULES_TOML,
    MAX_RULES_BYTES,
    default_rules,
    load_rules,
)

HASH = "ab" * 32


def test_default_rules_are_sensible() -> None:
    rules = default_rules().for_model("any-model")
    assert rules.suspicious_remote_ports == {"23", "2323"}
    assert rules.watched_immutable
    assert rules.watched_severity == "critical"
    assert rules.thresholds["failed-logins"].max == 20
    assert rules.thresholds["svc-authz-failures"].max is not None
    assert rules.thresholds["svc-connect-refusals"].severity == "high"
    assert rules.listening_tcp_ports is None  # allow-lists only where written
    assert load_rules(DEFAULT_RULES_TOML, source="x").defaults == rules


def test_a_model_overrides_the_defaults_key_by_key() -> None:
    text = DEFAULT_RULES_TOML + (
        '\n[models."gw-v2"]\n'
        "allow.listening_tcp_ports = [22, 8883]\n"
        'allow.destinations = ["10.0.0.0/8", "203.0.113.7"]\n'
        f'allow.executables = ["{HASH}"]\n'
        '[[models."gw-v2".thresholds]]\nmetric = "failed-logins"\nmax = 3\nseverity = "critical"\n'
    )
    rules = load_rules(text, source="rules.toml")
    gw = rules.for_model("gw-v2")
    assert gw.listening_tcp_ports == {"22", "8883"}
    assert gw.executables == {HASH}
    assert gw.destination_allowed("10.1.2.3")
    assert gw.destination_allowed("203.0.113.7")
    assert not gw.destination_allowed("203.0.113.8")
    assert not gw.destination_allowed("not-an-address")
    assert gw.thresholds["failed-logins"].max == 3
    assert gw.thresholds["failed-logins"].severity == "critical"
    assert "svc-connect-refusals" in gw.thresholds  # the other defaults are kept
    assert gw.suspicious_remote_ports == {"23", "2323"}
    assert rules.for_model("cam-v1") == rules.defaults
    assert rules.defaults.destination_allowed("192.0.2.1")  # no allow-list: everything


BAD = [
    ("syntax", "version = ", "(syntax)"),
    ("unknown-top", "colour = 1", "(top).colour"),
    ("version", "version = 2", "version"),
    ("unknown-rule-key", "[defaults]\nallowed = []", "defaults.allowed"),
    ("unknown-allow-key", "[defaults.allow]\nports = [1]", "defaults.allow.ports"),
    ("port-range", "[defaults.allow]\nlistening_tcp_ports = [70000]", "listening_tcp_ports"),
    ("port-bool", "[defaults.allow]\nlistening_udp_ports = [true]", "listening_udp_ports"),
    ("port-not-list", "[defaults.allow]\nlistening_tcp_ports = 22", "listening_tcp_ports"),
    ("bad-cidr", '[defaults.allow]\ndestinations = ["10.0.0.0/33"]', "destinations"),
    ("cidr-not-string", "[defaults.allow]\ndestinations = [10]", "destinations"),
    ("bad-hash", '[defaults.allow]\nexecutables = ["ABC"]', "executables"),
    ("threshold-metric", '[[defaults.thresholds]]\nmetric = "nope"\nmax = 1', "metric"),
    ("threshold-none", '[[defaults.thresholds]]\nmetric = "failed-logins"', "thresholds[0]"),
    (
        "threshold-min-above-max",
        '[[defaults.thresholds]]\nmetric = "cpu-percent"\nmin = 5\nmax = 1',
        "thresholds[0]",
    ),
    ("threshold-nan", '[[defaults.thresholds]]\nmetric = "cpu-percent"\nmax = nan', ".max"),
    (
        "threshold-severity",
        '[[defaults.thresholds]]\nmetric = "cpu-percent"\nmax = 1\nseverity = "dire"',
        ".severity",
    ),
    (
        "threshold-twice",
        '[[defaults.thresholds]]\nmetric = "cpu-percent"\nmax = 1\n'
        '[[defaults.thresholds]]\nmetric = "cpu-percent"\nmax = 2',
        "thresholds[1].metric",
    ),
    ("watched-relative", '[defaults.watched_files]\npaths = ["etc/passwd"]', "paths"),
    ("watched-immutable", '[defaults.watched_files]\nimmutable = "yes"', "immutable"),
    ("suspicious-severity", '[defaults]\nsuspicious_severity = "bad"', "suspicious_severity"),
    ("models-not-table", "models = 3", "models"),
    ("model-not-table", "[models]\ncam = 3", "models.cam"),
    ("model-unknown-key", '[models."cam"]\nfoo = 1', "models.cam.foo"),
]


@pytest.mark.parametrize(("text", "key"), [(t, k) for _, t, k in BAD], ids=[i for i, _, _ in BAD])
def test_bad_rules_name_the_key(text: str, key: str) -> None:
    with pytest.raises(InvalidInput) as err:
        load_rules(text, source="rules.toml")
    assert err.value.code == "monitor.rules.invalid"
    assert key in err.value.message
    assert err.value.message.startswith("rules.toml: ")
    assert err.value.hint


def test_rules_file_size_is_bounded() -> None:
    with pytest.raises(InvalidInput, match="larger than"):
        load_rules("#" * (MAX_RULES_BYTES + 1), source="big.toml")
