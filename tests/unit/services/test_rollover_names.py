"""The names of CA generations (api.md: ``<kind>-<n>``), pure."""

from __future__ import annotations

import pytest

from trustfleet.errors import InvalidInput
from trustfleet.services.rollover import next_ca_name

CASES = {
    "first_rollover": ("device", ["root", "manufacturing", "device"], "device-2"),
    "after_two": ("device", ["device", "device-2", "device-3"], "device-4"),
    "other_kind_ignored": ("manufacturing", ["device-7", "manufacturing"], "manufacturing-2"),
    "gap_keeps_highest": ("device", ["device", "device-5"], "device-6"),
    "lookalike_ignored": ("device", ["device-x", "devices-9", "device-2b"], "device-2"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_the_next_generation_follows_the_highest(case: str) -> None:
    kind, existing, expected = CASES[case]
    assert next_ca_name(kind, existing) == expected


@pytest.mark.parametrize("kind", ["root", "tuf", ""], ids=["root", "unknown", "empty"])
def test_only_device_and_manufacturing_cas_roll_over(kind: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        next_ca_name(kind, [])
    assert caught.value.code == "ca.kind"
