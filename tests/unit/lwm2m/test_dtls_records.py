"""Pure parts of the DTLS server: cookies and packing records into datagrams."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trustfleet.lwm2m._dtls_records import CookieJar, pack_records, split_records


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_cookie_verifies_for_its_address_only() -> None:
    jar = CookieJar(ttl_s=300, clock=FakeClock())
    cookie = jar.generate(("127.0.0.1", 5000))
    assert jar.verify(("127.0.0.1", 5000), cookie)
    assert not jar.verify(("127.0.0.1", 5001), cookie)
    assert not jar.verify(("127.0.0.2", 5000), cookie)
    assert not jar.verify(("127.0.0.1", 5000), cookie[:-1])


def test_cookie_survives_one_rotation_not_two() -> None:
    clock = FakeClock()
    jar = CookieJar(ttl_s=300, clock=clock)
    cookie = jar.generate(("10.0.0.1", 1))
    clock.now = 310
    assert jar.verify(("10.0.0.1", 1), cookie)
    assert jar.generate(("10.0.0.1", 1)) != cookie
    clock.now = 620
    assert not jar.verify(("10.0.0.1", 1), cookie)


def _record(body: bytes) -> bytes:
    return b"\x16\xfe\xfd" + b"\x00" * 8 + len(body).to_bytes(2, "big") + body


records = st.lists(st.binary(max_size=300).map(_record), max_size=20)


@given(records)
def test_split_records_round_trip(items: list[bytes]) -> None:
    assert list(split_records(b"".join(items))) == items


@given(records, st.integers(min_value=13, max_value=1500))
def test_pack_records_keeps_order_and_bound(items: list[bytes], bound: int) -> None:
    datagrams = pack_records(b"".join(items), max_datagram_bytes=bound)
    assert b"".join(datagrams) == b"".join(items)
    for datagram in datagrams:
        parts = list(split_records(datagram))
        assert len(datagram) <= bound or len(parts) == 1


@given(st.binary(max_size=200))
def test_split_records_never_raises_on_garbage(data: bytes) -> None:
    assert b"".join(split_records(data)) == data
