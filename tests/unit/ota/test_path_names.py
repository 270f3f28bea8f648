"""Issue 9 §6, finding 4: every name that becomes a path is checked by a strict pattern.

A model name and a version become folders (``ota/staging/<model>/<version>/``) and target
paths (``<model>/<version>/image.bin``); a device id becomes a device folder. None of them may
contain '/', be or start with '.', or carry NUL, whitespace or non-ASCII letters.
"""

from __future__ import annotations

import pytest

from trustfleet.errors import InvalidInput
from trustfleet.ota.versions import check_model, parse_version
from trustfleet.pki import validate_device_id

BAD_MODELS = [
    ("empty", ""),
    ("dot", "."),
    ("dotdot", ".."),
    ("leading_dot", ".hidden"),
    ("slash", "a/b"),
    ("traversal", "../etc"),
    ("absolute", "/etc"),
    ("backslash", "a\\b"),
    ("nul", "a\x00b"),
    ("newline", "a\n"),
    ("space", "a b"),
    ("unicode_letter", "modèle"),
    ("unicode_digit", "m\u0663"),
    ("too_long", "m" * 65),
]


@pytest.mark.parametrize("name", [pytest.param(n, id=i) for i, n in BAD_MODELS])
def test_bad_model_names(name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_model(name)
    assert caught.value.code == "ota.model.invalid"


@pytest.mark.parametrize("name", ["sim-v1", "a", "A.b_c-1", "x" * 64, "v1..2"])
def test_good_model_names(name: str) -> None:
    assert check_model(name) == name


BAD_VERSIONS = [
    ("traversal", "../1.0.0"),
    ("slash", "1.0/0"),
    ("dotdot", ".."),
    ("nul", "1.0.0\x00"),
    ("newline", "1.0.0\n"),
    ("leading_zero", "01.0.0"),
]


@pytest.mark.parametrize("text", [pytest.param(v, id=i) for i, v in BAD_VERSIONS])
def test_bad_versions(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_version(text)


BAD_DEVICE_IDS = [
    ("traversal", "../../etc/x"),
    ("leading_dot", ".dev-12345678"),
    ("slash", "dev/12345678"),
    ("nul", "dev-1234\x005678"),
    ("upper", "DEV-12345678"),
]


@pytest.mark.parametrize("text", [pytest.param(v, id=i) for i, v in BAD_DEVICE_IDS])
def test_bad_device_ids(text: str) -> None:
    with pytest.raises(InvalidInput):
        validate_device_id(text)
