"""PKCS#11 URI parsing (RFC 7512): good inputs, a table of bad ones, and round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustfleet.errors import InvalidInput
from trustfleet.keystore import Pkcs11Uri
from trustfleet.keystore._uri import MAX_URI_CHARS, OBJECT_TYPES


def test_parse_full_uri() -> None:
    uri = Pkcs11Uri.parse(
        "pkcs11:token=Device%20CA;manufacturer=SoftHSM%20project;serial=1a2b;"
        "object=ca-key;id=%01%02%ff;type=private"
        "?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/tf/pin"
    )
    assert uri == Pkcs11Uri(
        token="Device CA",
        manufacturer="SoftHSM project",
        serial="1a2b",
        object="ca-key",
        id=b"\x01\x02\xff",
        type="private",
        module_path="/usr/lib/softhsm/libsofthsm2.so",
        pin_source="file:/etc/tf/pin",
    )


def test_scheme_is_case_insensitive_and_empty_path_allowed() -> None:
    assert Pkcs11Uri.parse("PKCS11:") == Pkcs11Uri()
    assert Pkcs11Uri.parse("pkcs11:token=") == Pkcs11Uri(token="")


def test_str_encodes_reserved_characters() -> None:
    uri = Pkcs11Uri(token="a;b?c", object="é", id=b"AB")
    assert str(uri) == "pkcs11:token=a%3Bb%3Fc;object=%C3%A9;id=%41%42"


def test_pin_value_refused_with_reason() -> None:
    with pytest.raises(InvalidInput, match="PINs do not go in URIs") as info:
        Pkcs11Uri.parse("pkcs11:token=t?pin-value=123456")
    assert "123456" not in str(info.value)


BAD_URIS = [
    ("no-scheme", "token=foo"),
    ("wrong-scheme", "pkcs12:token=foo"),
    ("no-equals", "pkcs11:token"),
    ("empty-name", "pkcs11:=foo"),
    ("unknown-path-attr", "pkcs11:model=foo"),
    ("slot-id-not-supported", "pkcs11:slot-id=1"),
    ("duplicate-attr", "pkcs11:token=a;token=b"),
    ("duplicate-query", "pkcs11:?pin-source=env:A&pin-source=env:B"),
    ("bad-type", "pkcs11:type=data"),
    ("bad-percent", "pkcs11:token=%zz"),
    ("truncated-percent", "pkcs11:token=%4"),
    ("space", "pkcs11:token=a b"),
    ("raw-non-ascii", "pkcs11:token=é"),
    ("slash-in-path", "pkcs11:token=a/b"),
    ("not-utf8", "pkcs11:object=%ff"),
    ("unknown-query", "pkcs11:token=a?module-name=softhsm2"),
    ("pin-value", "pkcs11:token=a?pin-value=secret"),
    ("too-long", "pkcs11:token=" + "a" * MAX_URI_CHARS),
    ("empty-segment", "pkcs11:token=a;;object=b"),
]


@pytest.mark.parametrize("text", [t for _, t in BAD_URIS], ids=[i for i, _ in BAD_URIS])
def test_bad_uris_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"invalid PKCS#11 URI: .+"):
        Pkcs11Uri.parse(text)


_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
_optional_text = st.none() | _text


_uris = st.builds(
    Pkcs11Uri,
    token=_optional_text,
    object=_optional_text,
    id=st.none() | st.binary(max_size=32),
    type=st.none() | st.sampled_from(OBJECT_TYPES),
    manufacturer=_optional_text,
    serial=_optional_text,
    module_path=_optional_text,
    pin_source=_optional_text,
)


@given(_uris)
def test_round_trip(uri: Pkcs11Uri) -> None:
    text = str(uri)
    assert Pkcs11Uri.parse(text) == uri
    assert str(Pkcs11Uri.parse(text)) == text
