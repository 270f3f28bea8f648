"""configfile.options_of: an options dataclass filled from a section's same-named fields."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from trustfleet.agent.updater.tufclient import TufBounds
from trustfleet.configfile.device import OtaSection
from trustfleet.configfile.options import options_of
from trustfleet.server._limits import ConnectionLimits, limits_from_settings
from trustfleet.settings import ApiSettings


def test_same_named_fields_come_from_the_section_the_others_keep_their_defaults() -> None:
    api = ApiSettings(max_body_bytes=4096, idle_timeout_s=5.0, max_connections=7)
    limits = limits_from_settings(api)
    assert (limits.max_body_bytes, limits.idle_timeout_s, limits.max_connections) == (
        4096,
        5.0,
        7,
    )
    assert limits.max_requests_per_connection == ConnectionLimits().max_requests_per_connection


def test_a_given_value_replaces_the_section_s_own() -> None:
    ota = OtaSection(max_image_bytes=1 << 20, max_root_bytes=8192)
    bounds = options_of(TufBounds, ota, max_target_bytes=ota.max_image_bytes)
    assert (bounds.max_target_bytes, bounds.max_root_bytes) == (1 << 20, 8192)
    assert bounds.max_delegations == TufBounds().max_delegations


def test_a_given_name_the_dataclass_lacks_is_refused() -> None:
    @dataclass(frozen=True)
    class Options:
        max_root_bytes: int = 1

    with pytest.raises(TypeError):
        options_of(Options, OtaSection(), unknown=1)
