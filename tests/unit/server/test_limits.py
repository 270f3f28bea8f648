"""The per-worker connection gate and what it counts by (pure)."""

from __future__ import annotations

import pytest

from trustfleet.server._limits import ConnectionGate, ConnectionLimits, source_key

SOURCES = {
    "ipv4": ("192.0.2.7", "192.0.2.7"),
    "ipv6-counts-by-its-64": ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    "ipv6-same-64-same-key": ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    "ipv4-mapped-ipv6": ("::ffff:192.0.2.7", "192.0.2.7"),
    "not-an-address": ("?", "?"),
}


@pytest.mark.parametrize(("address", "key"), list(SOURCES.values()), ids=list(SOURCES))
def test_source_key(address: str, key: str) -> None:
    assert source_key(address) == key


def test_gate_caps_per_source_and_in_total_and_gives_places_back() -> None:
    gate = ConnectionGate(ConnectionLimits(max_connections=3, max_connections_per_source=2))
    assert [gate.admit("a") for _ in range(3)] == [True, True, False]
    assert (gate.refused_total, gate.refused_per_source) == (0, 1)
    assert gate.admit("b")
    assert not gate.admit("c")
    assert (gate.refused_total, gate.refused_per_source, gate.open_connections) == (1, 1, 3)
    gate.release("a")
    assert gate.admit("c")
    assert gate.open_connections == 3
