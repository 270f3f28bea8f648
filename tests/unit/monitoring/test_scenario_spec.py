"""Scenario files: every built-in loads; bad files fail with one error naming the key."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support.monitoring_scenarios import BASE, small
from trustfleet.errors import InvalidInput
from trustfleet.monitoring.scenario import (
    builtin_scenarios,
    load_scenario,
    resolve_scenario,
)

ATTACK_CLASSES = {
    "botnet-scanning", "burst-exfiltration", "backdoor-listener", "credential-stuffing",
    "c2-beaconing", "mqtt-flooding", "flapping", "firmware-tampering",
}  # fmt: skip
EFFECT = 'effects = [{ metric = "all-bytes-out", op = "add", value = 500 }]'


def test_the_small_scenario_loads() -> None:
    s = small()
    assert s.name == "t" and s.interval_s == 300 and s.learning_hours == 2
    assert [m.name for m in s.models] == ["m1"]
    assert s.attack_classes == ("x",)


@pytest.mark.parametrize("name", sorted(builtin_scenarios()))
def test_every_builtin_scenario_loads_on_its_own(name: str) -> None:
    s = load_scenario(builtin_scenarios()[name], source=f"{name}.toml")
    assert {m.name for m in s.models} == {"cam-v2", "thermo-s1", "gw-x1"}
    if name in ATTACK_CLASSES:
        assert s.attack_classes == (name,)


def test_builtins_cover_every_attack_class_and_all_attacks_has_them_all() -> None:
    names = set(builtin_scenarios())
    assert ATTACK_CLASSES | {"normal", "all-attacks"} <= names
    assert not load_scenario(builtin_scenarios()["normal"], source="normal").attacks
    every = load_scenario(builtin_scenarios()["all-attacks"], source="all-attacks")
    assert set(every.attack_classes) == ATTACK_CLASSES


def test_resolve_by_name_and_unknown_name() -> None:
    assert resolve_scenario("flapping", read_file=None).attack_classes == ("flapping",)
    with pytest.raises(InvalidInput, match="nosuch") as info:
        resolve_scenario("nosuch", read_file=None)
    assert info.value.code == "monitor.scenario.unknown"
    assert info.value.hint and "normal" in info.value.hint


def _swap(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new)


def _effect(body: str) -> str:
    return _swap(EFFECT, f"effects = [{body}]")


# id: (scenario text, words the error names)
BAD: dict[str, tuple[str, str]] = {
    "not-toml": ("x = ", "not valid TOML"),
    "too-large": (BASE + "#" * 300_000, "larger than"),
    "unknown-top-key": (BASE + "\n[extra]\n", "extra is not a known key"),
    "unknown-scenario-key": (_swap("interval_s = 300", "intervl_s = 300"), "scenario.intervl_s"),
    "interval-too-small": (_swap("interval_s = 300", "interval_s = 1"), "scenario.interval_s"),
    "hours-too-long": (_swap("hours = 12", "hours = 100000"), "scenario.hours"),
    "unknown-include": (_swap('name = "t"', 'name = "t"\ninclude = "nope"'), "scenario.include"),
    "unknown-numeric-metric":
        (_swap("numbers.all-bytes-out]", "numbers.bytes-out]"), "models.m1.numbers.bytes-out"),
    "set-metric-as-number":
        (_swap("numbers.all-bytes-out]", "numbers.executables]"), "models.m1.numbers.executables"),
    "unknown-set-metric":
        (_swap("sets.destination-ip-addresses]", "sets.destinations]"),
         "models.m1.sets.destinations"),
    "bad-noise": (_swap('noise = "none"', 'noise = "gaussian"'), "all-bytes-out.noise"),
    "rhythm-of-two-hours": (_swap('noise = "none"', "rhythm = [1, 2]"), "all-bytes-out.rhythm"),
    "unknown-rhythm": (_swap('noise = "none"', 'rhythm = "weekly"'), "all-bytes-out.rhythm"),
    "negative-level": (_swap("level = 1000", "level = -1"), "all-bytes-out.level"),
    "level-is-text":
        (_swap("level = 1000", 'level = "high"'),
         "all-bytes-out.level has the wrong type"),
    "level-is-a-bool":
        (_swap("level = 1000", "level = true"),
         "all-bytes-out.level has the wrong type"),
    "unknown-profile-key": (_swap("level = 1000", "levle = 1000"), "all-bytes-out.levle"),
    "too-many-members":
        (_swap('members = ["192.0.2.10"]', f"members = {[str(i) for i in range(300)]}"),
         "destination-ip-addresses.members"),
    "bad-cidr-in-pool":
        (_swap('members = ["192.0.2.10"]', 'pool = ["10.0.0.0/33"]'),
         "destination-ip-addresses.pool"),
    "draw-more-than-the-pool":
        (_swap('members = ["192.0.2.10"]', 'pool = ["192.0.2.1"]\ndraw = 3'),
         "destination-ip-addresses.draw"),
    "no-models": ("[scenario]\nname = 'empty'\n", "models must define at least one model"),
    "bad-class-name": (_swap('class = "x"', 'class = "Bad Name"'), "attacks[0].class"),
    "unknown-model-in-attack":
        (_swap('class = "x"', 'class = "x"\nmodels = ["nope"]'), "attacks[0].models"),
    "devices-and-fraction":
        (_swap("devices = 2\nonset_h", "devices = 2\nfraction = 0.5\nonset_h"),
         "attacks[0].devices"),
    "neither-devices-nor-fraction":
        (_swap("devices = 2\nonset_h", "onset_h"),
         "attacks[0].devices"),
    "too-many-devices":
        (_swap("devices = 2\nonset_h", "devices = 1000000\nonset_h"),
         "attacks[0].devices"),
    "onset-of-three": (_swap("onset_h = 4", "onset_h = [1, 2, 3]"), "attacks[0].onset_h"),
    "no-effects": (_swap(EFFECT, "effects = []"), "attacks[0].effects"),
    "unknown-op":
        (_effect('{ metric = "all-bytes-out", op = "divide" }'),
         "attacks[0].effects[0].op"),
    "set-op-on-a-number":
        (_effect('{ metric = "all-bytes-out", op = "members" }'), "attacks[0].effects[0].op"),
    "number-op-on-a-set":
        (_effect('{ metric = "executables", op = "add" }'), "attacks[0].effects[0].op"),
    "effect-on-a-metric-the-model-lacks":
        (_effect('{ metric = "cpu-percent", op = "add", value = 1 }'),
         "effects[0].metric is cpu-percent"),
    "unknown-effect-metric": (_effect('{ metric = "bytes", op = "add" }'), "effects[0].metric"),
    "periodic-without-period":
        (_effect('{ metric = "all-bytes-out", op = "periodic", value = 1 }'),
         "effects[0].period_s"),
    "unknown-generator":
        (_effect('{ metric = "executables", op = "members", generator = "magic" }'),
         "effects[0].generator"),
    "list-without-values":
        (_effect('{ metric = "executables", op = "members", generator = "list" }'),
         "effects[0].values"),
    "ports-without-ports":
        (_effect('{ metric = "listening-tcp-ports", op = "members", generator = "ports" }'),
         "effects[0].ports"),
    "port-out-of-range":
        (_effect('{ metric = "listening-tcp-ports", op = "members", generator = "ports", '
                 'ports = [70000] }'),
         "effects[0].ports"),
    "file-hash-on-destinations":
        (_effect('{ metric = "destination-ip-addresses", op = "members", generator = "file-hash", '
                 'values = ["/bin/x"] }'), "effects[0].generator"),
    "network-generator-without-networks":
        (_effect('{ metric = "destination-ip-addresses", op = "members", generator = "network", '
                 'values = ["10.0.0.1"] }'), "effects[0].values"),
    "too-many-new-members":
        (_effect('{ metric = "executables", op = "members", generator = "hashes", count = 5000 }'),
         "effects[0].count"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_scenario_names_the_key(case: str) -> None:
    text, words = BAD[case]
    with pytest.raises(InvalidInput) as info:
        load_scenario(text, source="bad.toml")
    assert info.value.code == "monitor.scenario.invalid"
    assert words in info.value.message, info.value.message
    assert info.value.message.startswith("bad.toml: ")
    assert info.value.hint and "docs/monitoring.md" in info.value.hint


def test_the_example_in_the_docs_loads() -> None:
    docs = Path(__file__).resolve().parents[3] / "docs" / "monitoring.md"
    text = docs.read_text().split("### The file format", 1)[1]
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    s = load_scenario(example, source="docs/monitoring.md")
    assert s.attack_classes == ("exfil-at-night",)
    assert {m.name for m in s.models} >= {"cam-v2", "thermo-s1", "gw-x1"}


def _toml_float(f: float) -> str:
    if math.isnan(f):
        return "nan"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    return repr(f)


_VALUES = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(_toml_float),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.text(max_size=20).map(lambda t: '"' + t.replace("\\", "").replace('"', "") + '"'),
    st.lists(st.integers(min_value=-5, max_value=70_000), max_size=5).map(str),
)
_KEYS = ("interval_s", "devices", "hours", "learning_hours", "level", "onset_h", "duration_h")


@settings(max_examples=200, deadline=None)
@given(key=st.sampled_from(_KEYS), value=_VALUES)
def test_any_value_for_a_key_loads_or_is_one_invalid_input(key: str, value: str) -> None:
    lines = [
        f"{key} = {value}" if line.startswith(f"{key} =") else line for line in BASE.split("\n")
    ]
    try:
        load_scenario("\n".join(lines), source="fuzz.toml")
    except InvalidInput as exc:
        assert exc.code == "monitor.scenario.invalid"
        assert exc.message.startswith("fuzz.toml: ")
