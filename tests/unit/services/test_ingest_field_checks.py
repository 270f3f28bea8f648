"""Each field check of the ingest verifier (``services/_ingest_checks.py``) on its own: every
bound exactly at its limit and one past it, every refusal code. Pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from trustfleet.errors import InvalidInput
from trustfleet.services._ingest_checks import (
    MAX_METRIC_NAME_CHARS,
    MAX_METRICS,
    MAX_SEQ,
    MAX_TS_CHARS,
    METRIC_MAX,
    METRIC_MIN,
    IngestLimits,
    check_boot,
    check_metrics_object,
    check_seq,
    load_body,
    parse_ts,
)
from trustfleet.settings import BrokerSettings, IngestSettings, ServerSettings

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # pure functions of `now`: any instant works
DEFAULTS = IngestLimits()


def _code(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(InvalidInput) as info:
        call(*args, **kwargs)
    return str(info.value.code)


# -- the limits ---------------------------------------------------------------------------


def test_the_bounds_of_the_store() -> None:
    assert (MAX_METRICS, MAX_METRIC_NAME_CHARS, MAX_TS_CHARS) == (256, 64, 40)
    assert MAX_SEQ == METRIC_MAX == 2**63 - 1
    assert METRIC_MIN == -(2**63)


def test_the_default_limits() -> None:
    limits = IngestLimits()
    assert limits == IngestLimits(
        max_bytes=16384,
        ts_max_past=timedelta(days=7),
        ts_max_future=timedelta(hours=1),
        max_json_depth=16,
    )


def test_the_limits_come_from_the_server_settings() -> None:
    settings = ServerSettings(
        home=Path("/nonexistent"),
        ca={},
        broker=BrokerSettings(max_payload_bytes=1000),
        ingest=IngestSettings(ts_max_past_s=120, ts_max_future_s=5, max_json_depth=3),
    )
    assert IngestLimits.from_settings(settings) == IngestLimits(
        max_bytes=1000,
        ts_max_past=timedelta(seconds=120),
        ts_max_future=timedelta(seconds=5),
        max_json_depth=3,
    )


def test_limits_are_immutable_keyword_only_values() -> None:
    with pytest.raises(AttributeError):
        DEFAULTS.max_bytes = 1  # type: ignore[misc]
    assert not hasattr(DEFAULTS, "__dict__")
    with pytest.raises(TypeError):
        IngestLimits(1)  # type: ignore[misc]


# -- load_body: size, JSON, object, depth ------------------------------------------------


def _sized(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes."""
    payload = b'{"pad":""}'
    return payload[:-2] + b"x" * (size - len(payload)) + b'"}'


def test_a_payload_of_max_bytes_loads_and_one_byte_more_is_too_large() -> None:
    limits = IngestLimits(max_bytes=300)
    assert load_body(_sized(300), limits) == {"pad": "x" * 290}
    assert _code(load_body, _sized(301), limits) == "ingest.too_large"


def test_the_default_size_bound_is_16_KiB() -> None:
    assert load_body(_sized(16384), DEFAULTS) == {"pad": "x" * 16374}
    assert _code(load_body, _sized(16385), DEFAULTS) == "ingest.too_large"


NOT_JSON = {
    "nan": b'{"x":NaN}',
    "infinity": b'{"x":Infinity}',
    "minus-infinity": b'{"x":-Infinity}',
    "truncated": b'{"x":',
    "latin1": b'{"x":"\xff"}',
    "raw-surrogate": b'{"x":"\xed\xa0\x80"}',
    "escaped-surrogate-lower": b'{"x":"\\ud800"}',
    "escaped-surrogate-upper": b'{"x":"\\uDFFF"}',
    "escaped-surrogate-mixed": b'{"x":"\\uDa00"}',
    "escaped-surrogate-key": b'{"\\udbff":1}',
}


@pytest.mark.parametrize("payload", NOT_JSON.values(), ids=NOT_JSON.keys())
def test_what_is_not_storable_utf8_json_is_not_json(payload: bytes) -> None:
    assert _code(load_body, payload, DEFAULTS) == "ingest.not_json"


def test_escapes_of_valid_characters_load() -> None:
    payload = b'{"x":"\\u00e9\\ud83d\\ude00\\uD83D\\uDE00","y":"\\\\ud800"}'
    assert load_body(payload, DEFAULTS) == {"x": "\u00e9\U0001f600\U0001f600", "y": "\\ud800"}


@pytest.mark.parametrize("payload", [b"[]", b"[1]", b'"x"', b"1", b"null", b"true"])
def test_json_that_is_not_an_object_is_refused(payload: bytes) -> None:
    assert _code(load_body, payload, DEFAULTS) == "ingest.not_object"


def _objects(depth: int) -> bytes:
    """A payload nesting ``depth`` objects (the payload itself is level 1)."""
    return ('{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)).encode()


def _arrays(depth: int) -> bytes:
    """A payload whose deepest value is ``depth - 1`` nested arrays."""
    return ('{"a":' + "[" * (depth - 1) + "]" * (depth - 1) + "}").encode()


def _mixed(depth: int) -> bytes:
    levels = ['{"a":' if i % 2 else "[" for i in range(1, depth)]
    closers = ["}" if i % 2 else "]" for i in range(depth - 1, 0, -1)]
    return ("{" + '"z":' + "".join(levels) + "1" + "".join(closers) + "}").encode()


@pytest.mark.parametrize("nest", [_objects, _arrays, _mixed], ids=["objects", "arrays", "mixed"])
@pytest.mark.parametrize("max_depth", [2, 3, 16])
def test_nesting_at_max_depth_loads_and_one_level_more_is_too_deep(
    nest: Any, max_depth: int
) -> None:
    limits = IngestLimits(max_json_depth=max_depth)
    assert isinstance(load_body(nest(max_depth), limits), dict)
    assert _code(load_body, nest(max_depth + 1), limits) == "ingest.too_deep"


def test_the_default_depth_is_16() -> None:
    assert isinstance(load_body(_objects(16), DEFAULTS), dict)
    assert _code(load_body, _objects(17), DEFAULTS) == "ingest.too_deep"


def test_many_brackets_that_do_not_nest_deep_load() -> None:
    """Brackets side by side, or inside strings, are not depth."""
    limits = IngestLimits(max_json_depth=2)
    wide = {"a": [[] for _ in range(1)], "b": [], "c": {}, "d": "{{{[[[", "e": [1, 2]}
    wide_payload = json.dumps(wide).encode()
    assert wide_payload.count(b"{") + wide_payload.count(b"[") > 2
    assert _code(load_body, wide_payload, limits) == "ingest.too_deep"  # "a" nests 3 levels
    del wide["a"]
    assert load_body(json.dumps(wide).encode(), limits) == wide


def test_a_deep_value_after_shallow_siblings_is_found() -> None:
    limits = IngestLimits(max_json_depth=3)
    body = {"a": 1, "b": [1, {"c": 2}], "d": {"e": [[1]]}, "f": "x"}
    assert _code(load_body, json.dumps(body).encode(), limits) == "ingest.too_deep"
    body["d"] = {"e": [1]}
    assert load_body(json.dumps(body).encode(), limits) == body


# -- parse_ts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ts",
    [NOW - timedelta(days=7), NOW + timedelta(hours=1), NOW],
    ids=["window-start", "window-end", "now"],
)
def test_ts_at_either_end_of_the_default_window_is_accepted(ts: datetime) -> None:
    assert parse_ts(ts.isoformat(), now=NOW, limits=DEFAULTS) == ts


@pytest.mark.parametrize(
    "ts",
    [NOW - timedelta(days=7, microseconds=1), NOW + timedelta(hours=1, microseconds=1)],
    ids=["before-window", "after-window"],
)
def test_ts_one_microsecond_outside_the_window_is_ts_range(ts: datetime) -> None:
    assert _code(parse_ts, ts.isoformat(), now=NOW, limits=DEFAULTS) == "ingest.ts_range"


def test_a_configured_window_is_applied() -> None:
    limits = IngestLimits(ts_max_past=timedelta(seconds=10), ts_max_future=timedelta(seconds=2))
    for offset in (-10, 2):
        ts = NOW + timedelta(seconds=offset)
        assert parse_ts(ts.isoformat(), now=NOW, limits=limits) == ts
    for offset in (-11, 3):
        ts = (NOW + timedelta(seconds=offset)).isoformat()
        assert _code(parse_ts, ts, now=NOW, limits=limits) == "ingest.ts_range"


def test_ts_with_an_offset_is_returned_in_utc() -> None:
    ts = parse_ts("2026-06-01T13:30:00+02:00", now=NOW, limits=DEFAULTS)
    assert ts == datetime(2026, 6, 1, 11, 30, tzinfo=UTC) and ts.tzinfo is UTC


def test_ts_of_40_characters_is_accepted_and_of_41_is_refused() -> None:
    at_bound = "2026-06-01T11:59:00.1234+00:00:00.123456"
    one_more = "2026-06-01T11:59:00.12345+00:00:00.123456"
    assert (len(at_bound), len(one_more)) == (MAX_TS_CHARS, MAX_TS_CHARS + 1)
    assert datetime.fromisoformat(one_more)  # parseable: only its length refuses it
    assert parse_ts(at_bound, now=NOW, limits=DEFAULTS) == datetime.fromisoformat(at_bound)
    assert _code(parse_ts, one_more, now=NOW, limits=DEFAULTS) == "ingest.field"


@pytest.mark.parametrize(
    "value",
    [None, 1780000000, b"2026-06-01T11:59:00Z", "yesterday", "", "2026-06-01T11:59:00"],
    ids=["none", "number", "bytes", "words", "empty", "no-offset"],
)
def test_ts_that_is_not_rfc3339_with_an_offset_is_a_field_error(value: object) -> None:
    assert _code(parse_ts, value, now=NOW, limits=DEFAULTS) == "ingest.field"


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "0001-01-01T00:00:00+23:59:59.999999",
        "9999-12-31T23:59:59-23:59:59.999999",
    ],
)
def test_ts_not_representable_in_utc_is_ts_range(value: str) -> None:
    assert _code(parse_ts, value, now=NOW, limits=DEFAULTS) == "ingest.ts_range"


# -- seq, boot ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, MAX_SEQ])
def test_seq_from_0_to_the_bigint_bound_is_accepted(value: int) -> None:
    assert check_seq(value) == value


@pytest.mark.parametrize("value", [-1, MAX_SEQ + 1, True, False, 1.0, "1", None])
def test_seq_negative_too_large_or_not_an_integer_is_refused(value: object) -> None:
    assert _code(check_seq, value) == "ingest.field"


@pytest.mark.parametrize("value", ["a", "Z-9_", "b" * 32])
def test_boot_of_1_to_32_allowed_characters_is_kept(value: str) -> None:
    assert check_boot(value) == value


def test_no_boot_is_none() -> None:
    assert check_boot(None) is None


@pytest.mark.parametrize("value", ["", "b" * 33, "a/b", "a b", "é", "a\n", 7, b"ab"])
def test_boot_empty_too_long_odd_or_not_text_is_refused(value: object) -> None:
    assert _code(check_boot, value) == "ingest.field"


# -- metrics --------------------------------------------------------------------------------


def test_metrics_of_every_kind_within_bounds_are_kept() -> None:
    metrics = {
        "m": 1,
        "x" * MAX_METRIC_NAME_CHARS: 2.5,
        "low": METRIC_MIN,
        "high": METRIC_MAX,
        "neg": -0.5,
        "zero": 0,
    }
    assert check_metrics_object(metrics) == metrics


def test_256_metrics_are_accepted_and_257_refused() -> None:
    metrics = {f"m{i}": i for i in range(MAX_METRICS)}
    assert check_metrics_object(metrics) == metrics
    metrics["one-more"] = 0
    assert _code(check_metrics_object, metrics) == "ingest.field"


def test_no_metrics_is_an_empty_object() -> None:
    assert check_metrics_object({}) == {}


@pytest.mark.parametrize("value", [None, [], [["t", 1]], "t=1", 1])
def test_metrics_that_are_not_an_object_are_refused(value: object) -> None:
    assert _code(check_metrics_object, value) == "ingest.field"


@pytest.mark.parametrize(
    "name",
    ["", "x" * (MAX_METRIC_NAME_CHARS + 1), "a\x00b", "\x00"],
    ids=["empty", "65", "nul", "only-nul"],
)
def test_a_metric_name_empty_too_long_or_with_nul_is_refused(name: str) -> None:
    assert _code(check_metrics_object, {name: 1}) == "ingest.field"


@pytest.mark.parametrize("value", [True, False, None, "1", [1], {"a": 1}])
def test_a_metric_that_is_not_a_number_is_refused(value: object) -> None:
    assert _code(check_metrics_object, {"t": value}) == "ingest.field"


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), float("-inf"), METRIC_MAX + 1, METRIC_MIN - 1],
    ids=["nan", "inf", "-inf", "2**63", "-(2**63)-1"],
)
def test_a_metric_not_finite_or_outside_64_bits_is_range(value: float) -> None:
    assert _code(check_metrics_object, {"t": value}) == "ingest.range"


def test_metrics_over_the_store_bound_once_encoded_are_too_large() -> None:
    metrics = {f"m{i:03d}{'x' * 50}": 1e22 for i in range(MAX_METRICS)}
    assert _code(check_metrics_object, metrics) == "ingest.too_large"


def test_a_metric_name_the_store_cannot_encode_is_a_field_error() -> None:
    assert _code(check_metrics_object, {"\ud800": 1}) == "ingest.field"
