"""Release versions and model names: exact parsing, ordering for anti-rollback, exact codes."""

from __future__ import annotations

import pytest

from trustfleet.errors import InvalidInput
from trustfleet.ota.versions import Version, check_model, format_version, parse_version


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0", (0, 0, 0)),
        ("2.1.0", (2, 1, 0)),
        ("10.20.30", (10, 20, 30)),
        ("999999999.999999999.999999999", (999_999_999, 999_999_999, 999_999_999)),
    ],
)
def test_parse_version_gives_exact_integers(text: str, expected: tuple[int, int, int]) -> None:
    version = parse_version(text)
    assert version == expected
    assert type(version) is tuple
    assert format_version(version) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",
        "1.0",
        "1.0.0.0",
        "01.0.0",
        "1.00.0",
        "1.0.01",
        "1000000000.0.0",
        "0.1000000000.0",
        "0.0.1000000000",
        "-1.0.0",
        "+1.0.0",
        "1.0.0-rc1",
        " 1.0.0",
        "1.0.0 ",
        "1,0,0",
        "v1.0.0",
    ],
)
def test_malformed_version_is_version_invalid(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_version(text)
    assert caught.value.code == "ota.version.invalid"


@pytest.mark.parametrize("value", [None, 100, (1, 0, 0), b"1.0.0"])
def test_non_text_version_is_version_invalid(value: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_version(value)  # type: ignore[arg-type]
    assert caught.value.code == "ota.version.invalid"


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("1.0.0", "1.0.1"),
        ("1.0.9", "1.1.0"),
        ("1.9.9", "2.0.0"),
        ("2.9.0", "2.10.0"),
        ("9.0.0", "10.0.0"),
        ("0.0.0", "0.0.1"),
    ],
)
def test_versions_order_numerically_not_textually(older: str, newer: str) -> None:
    assert parse_version(older) < parse_version(newer)
    assert not parse_version(newer) < parse_version(older)
    assert parse_version(older) != parse_version(newer)


def test_equal_versions_compare_equal() -> None:
    assert parse_version("3.2.1") == parse_version("3.2.1")
    assert not parse_version("3.2.1") < parse_version("3.2.1")


def test_format_version_joins_with_dots() -> None:
    assert format_version(Version((7, 0, 12))) == "7.0.12"


@pytest.mark.parametrize("name", ["a", "Z", "0", "_", "-", "a.b", "x" * 64, "A.b_c-1"])
def test_valid_model_is_returned_unchanged(name: str) -> None:
    assert check_model(name) == name


@pytest.mark.parametrize("name", ["", "x" * 65, ".a", ".", "..", "a/b", "a b", "a\x00", "é", "a\n"])
def test_bad_model_is_model_invalid(name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_model(name)
    assert caught.value.code == "ota.model.invalid"


@pytest.mark.parametrize("value", [None, 7, b"sim-v1"])
def test_non_text_model_is_model_invalid(value: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_model(value)  # type: ignore[arg-type]
    assert caught.value.code == "ota.model.invalid"
