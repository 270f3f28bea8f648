"""Generated records: deterministic, time-ordered, each attack operator's exact effect, truth."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from support.monitoring_scenarios import BASE, START, small, with_effects
from trustfleet.monitoring.records import DEVICE_NUMBERS, DEVICE_SETS, MetricsRecord
from trustfleet.monitoring.scenario import (
    DeviceBehaviour,
    Scenario,
    builtin_scenarios,
    device_id_for,
    fleet_plan,
    generate,
    ground_truth,
    load_scenario,
)

ONSET = START + timedelta(hours=4)
END = START + timedelta(hours=6)
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _builtin(name: str) -> Scenario:
    return load_scenario(builtin_scenarios()[name], source=name)


def _by_device(
    records: list[MetricsRecord], source: str = "device"
) -> dict[str, list[MetricsRecord]]:
    out: dict[str, list[MetricsRecord]] = {}
    for r in records:
        if r.source == source:
            out.setdefault(r.device_id, []).append(r)
    return out


def _run(s: Scenario, *, hours: float = 8) -> tuple[list[MetricsRecord], set[str]]:
    records = list(generate(s, devices=10, hours=hours, seed=3, start=START))
    attacked = {
        span.device_id for span in ground_truth(s, devices=10, hours=hours, seed=3, start=START)
    }
    return records, attacked


def _inside(r: MetricsRecord) -> bool:
    """The window overlaps the attack [4 h, 6 h)."""
    return r.end > ONSET and r.end - timedelta(seconds=r.interval_s) < END


def test_same_seed_same_records_other_seed_other_records() -> None:
    s = _builtin("all-attacks")
    one = list(generate(s, devices=20, hours=3, seed=7))
    assert one == list(generate(s, devices=20, hours=3, seed=7))
    assert one != list(generate(s, devices=20, hours=3, seed=8))


def test_records_are_time_ordered_with_device_and_service_views() -> None:
    s = _builtin("normal")
    records = list(generate(s, devices=5, hours=2, seed=1, start=START))
    assert len(records) == 5 * 24 * 2
    assert [r.end for r in records] == sorted(r.end for r in records)
    device = next(r for r in records if r.source == "device")
    service = next(r for r in records if r.source == "service")
    assert set(device.numbers) <= set(DEVICE_NUMBERS) and set(device.sets) <= set(DEVICE_SETS)
    assert all(k.startswith("svc-") for k in (*service.numbers, *service.sets))
    assert records[0].end == START + timedelta(seconds=300)


def test_a_window_is_the_same_whatever_order_it_is_asked_in() -> None:
    s = _builtin("all-attacks")
    records = [
        r for r in generate(s, devices=30, hours=60, seed=5, start=START) if r.source == "device"
    ]
    plan = fleet_plan(s, devices=30, seed=5)
    index = 7
    live = DeviceBehaviour(
        s, device_index=index, device_id=device_id_for(index, seed=5), model=plan[index].model,
        seed=5, start=START, devices=30,
    )  # fmt: skip
    mine = [r for r in records if r.device_id == device_id_for(index, seed=5)]
    for r in reversed(mine[::37]):  # backwards, sparse: still the same windows
        assert live.record(r.end, 300) == r


def test_normal_behaviour_has_a_daily_rhythm_and_benign_churn() -> None:
    s = _builtin("normal")
    records = _by_device(list(generate(s, devices=3, hours=48, seed=2, start=START)))
    series = next(iter(records.values()))
    by_hour = {h: [r.numbers["all-bytes-out"] for r in series if r.end.hour == h] for h in (4, 15)}
    assert sum(by_hour[15]) > 2 * sum(by_hour[4])  # the afternoon is busier than the night
    seen = set().union(*(r.sets["destination-ip-addresses"] for r in series))
    assert len(seen) > 20  # CDN addresses rotate inside a /24
    assert all(
        a.startswith("198.51.100.") for a in seen if a.count(".") == 3 and a.startswith("198.51")
    )


def test_add_changes_exactly_the_attack_windows_of_the_attacked_devices() -> None:
    records, attacked = _run(small())
    assert len(attacked) == 2
    for device, series in _by_device(records).items():
        for r in series:
            want = 1500 if device in attacked and _inside(r) else 1000
            assert r.numbers["all-bytes-out"] == want, (device, r.end)


@pytest.mark.parametrize(
    ("effect", "inside"),
    [
        ('{ metric = "all-bytes-out", op = "multiply", value = 3 }', lambda r: 3000),
        ('{ metric = "all-bytes-out", op = "set", value = 7 }', lambda r: 7),
        ('{ metric = "all-bytes-out", op = "ramp", value = 7200 }',
         lambda r: 1000 + round(7200 * min((r.end - ONSET).total_seconds() / 7200, 1))),
        ('{ metric = "all-bytes-out", op = "periodic", value = 50, period_s = 1800, duty = 0.1 }',
         lambda r: 1050 if ((r.end - ONSET).total_seconds() - 300) % 1800 < 180 else 1000),
    ],
    ids=["multiply", "set", "ramp", "periodic"],
)  # fmt: skip
def test_number_operators(effect: str, inside: object) -> None:
    records, attacked = _run(with_effects(effect))
    device = sorted(attacked)[0]
    for r in _by_device(records)[device]:
        want = inside(r) if _inside(r) else 1000  # type: ignore[operator]
        assert r.numbers["all-bytes-out"] == want, r.end


def test_periodic_bursts_hit_one_window_in_six() -> None:
    records, attacked = _run(
        with_effects(
            '{ metric = "all-bytes-out", op = "periodic", value = 50, period_s = 1800, duty = 0.1 }'
        )
    )
    series = [r for r in _by_device(records)[sorted(attacked)[0]] if _inside(r)]
    assert sum(r.numbers["all-bytes-out"] == 1050 for r in series) == len(series) // 6


def _sets_inside(
    effect: str, metric: str, extra: str = ""
) -> tuple[list[frozenset[str]], frozenset[str]]:
    records, attacked = _run(with_effects(effect, extra_models=extra))
    series = _by_device(records)[sorted(attacked)[0]]
    normal = series[0].sets.get(metric, frozenset())
    return [r.sets[metric] for r in series if _inside(r)], normal


def test_fresh_public_addresses_each_window_with_endpoints_on_the_ports() -> None:
    effect = ('{ metric = "destination-ip-addresses", op = "members", generator = "public-ip", '
              'count = 5, fresh = true, ports = [23, 2323] }')  # fmt: skip
    records, attacked = _run(with_effects(effect))
    series = [r for r in _by_device(records)[sorted(attacked)[0]] if _inside(r)]
    news = [r.sets["destination-ip-addresses"] - {"192.0.2.10"} for r in series]
    assert all(len(n) == 5 for n in news)
    assert len(set().union(*news)) == 5 * len(series)  # fresh: new ones every window
    for r, n in zip(series, news, strict=True):
        assert {e.rsplit(":", 1)[0] for e in r.sets["remote-endpoints"]} == n
        assert {e.rsplit(":", 1)[1] for e in r.sets["remote-endpoints"]} <= {"23", "2323"}
        assert not any(a.startswith(("10.", "127.", "192.168.")) for a in n)


def test_fixed_members_stay_the_same_and_count_in_the_derived_number() -> None:
    extra = '\n[models.m1.sets.listening-tcp-ports]\nmembers = ["22"]\n'
    effect = ('{ metric = "listening-tcp-ports", op = "members", generator = "ports", '
              'ports = [4444, 31337], count = 1 }')  # fmt: skip
    inside, normal = _sets_inside(effect, "listening-tcp-ports", extra)
    assert normal == {"22"}
    assert len(set(inside)) == 1
    (port,) = inside[0] - normal
    assert port in {"4444", "31337"}
    records, attacked = _run(with_effects(effect, extra_models=extra))
    counts = {
        r.numbers["num-listening-tcp-ports"]
        for r in _by_device(records)[sorted(attacked)[0]]
        if _inside(r)
    }
    assert counts == {2}


def test_a_number_effect_on_a_derived_count_applies() -> None:
    extra = '\n[models.m1.sets.listening-tcp-ports]\nmembers = ["22"]\n'
    records, attacked = _run(
        with_effects(
            '{ metric = "num-listening-tcp-ports", op = "add", value = 2 }', extra_models=extra
        )
    )
    for r in _by_device(records)[sorted(attacked)[0]]:
        assert r.numbers["num-listening-tcp-ports"] == (3 if _inside(r) else 1)


def test_hosts_of_a_network_for_an_inside_scan() -> None:
    effect = (
        '{ metric = "destination-ip-addresses", op = "members", generator = "network", '
        'values = ["10.1.2.0/24"], count = 4, fresh = true }'
    )
    inside, normal = _sets_inside(effect, "destination-ip-addresses")
    for s in inside:
        new = s - normal
        assert 1 <= len(new) <= 4 and all(a.startswith("10.1.2.") for a in new)


def test_remove_listed_members_and_some_usual_ones() -> None:
    extra = '\n[models.m1.sets.listening-tcp-ports]\nmembers = ["22", "8883"]\n'
    effect = '{ metric = "listening-tcp-ports", op = "remove", values = ["8883"] }'
    inside, normal = _sets_inside(effect, "listening-tcp-ports", extra)
    assert normal == {"22", "8883"} and set(inside) == {frozenset({"22"})}
    extra = "\n[models.m1.sets.executables]\nhashes = 5\n"
    inside, normal = _sets_inside(
        '{ metric = "executables", op = "remove", count = 2 }', "executables", extra
    )
    assert len(set(inside)) == 1 and inside[0] < normal and len(normal - inside[0]) == 2


def test_new_hashes_and_a_changed_watched_file() -> None:
    hashes = '{ metric = "executables", op = "members", generator = "hashes", count = 2 }'
    inside, _ = _sets_inside(hashes, "executables")
    assert all(len(s) == 2 and all(HEX64.match(h) for h in s) for s in inside)
    extra = '\n[models.m1.sets.watched-files]\nfiles = ["/usr/bin/tf-agent", "/etc/x"]\n'
    effect = (
        '{ metric = "watched-files", op = "members", generator = "file-hash", '
        'values = ["/usr/bin/tf-agent"] }'
    )
    inside, normal = _sets_inside(effect, "watched-files", extra)
    for s in inside:
        assert {m.split("=")[0] for m in s} == {"/usr/bin/tf-agent", "/etc/x"}
        assert len(s - normal) == 1 and next(iter(s - normal)).startswith("/usr/bin/tf-agent=")


def test_ground_truth_matches_onset_duration_and_the_first_changed_window() -> None:
    spans = ground_truth(small(), devices=10, hours=8, seed=3, start=START)
    assert len(spans) == 2 and {s.attack_class for s in spans} == {"x"}
    assert all(s.start == ONSET and s.end == END for s in spans)
    records, _ = _run(small())
    first = min(r.end for r in records if r.numbers.get("all-bytes-out") == 1500)
    assert timedelta(0) < first - ONSET <= timedelta(seconds=300)


def test_ground_truth_random_onsets_fractions_and_clipping() -> None:
    text = BASE.replace("devices = 2\nonset_h = 4", "fraction = 0.5\nonset_h = [3, 5]").replace(
        "duration_h = 2", "duration_h = 10"
    )
    s = load_scenario(text, source="t")
    spans = ground_truth(s, devices=10, hours=8, seed=3, start=START)
    assert len(spans) == 5
    assert len({sp.start for sp in spans}) == 5  # each device its own onset
    for sp in spans:
        assert START + timedelta(hours=3) <= sp.start <= START + timedelta(hours=5)
        assert sp.end == START + timedelta(hours=8)  # clipped to the run


def test_attack_classes_get_different_devices() -> None:
    s = _builtin("all-attacks")
    spans = ground_truth(s, devices=100, hours=72, seed=1)
    assert len(spans) == 16
    assert len({sp.device_id for sp in spans}) == 16
    per_class = {c: sum(sp.attack_class == c for sp in spans) for c in s.attack_classes}
    assert set(per_class.values()) == {2}


def test_live_windows_of_another_length_scale_counters_not_gauges() -> None:
    extra = '\n[models.m1.numbers.cpu-percent]\nlevel = 20\nnoise = "none"\n'
    s = small(BASE + extra)
    live = DeviceBehaviour(s, device_index=0, device_id="dev-live", model="m1", seed=1, start=START)
    r = live.record(START + timedelta(minutes=1), 60)
    assert r.device_id == "dev-live" and r.interval_s == 60 and r.source == "device"
    assert r.numbers["all-bytes-out"] == 200  # 1000 per 5 minutes
    assert r.numbers["cpu-percent"] == 20
    assert live.service_record(r.end, 60) is None  # the model has no svc- profile


def test_a_model_the_scenario_lacks_follows_the_plan_s_model() -> None:
    live = DeviceBehaviour(
        small(), device_index=3, device_id="dev-x", model="other", seed=1, start=START
    )
    r = live.record(START + timedelta(minutes=5), 300)
    assert r.model == "other" and r.numbers["all-bytes-out"] == 1000
