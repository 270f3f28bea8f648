"""RFC 9162 §2.1 as its recursive definitions: the reference the audit tests check against.

Deliberately naive (no tiles, no iteration, no caching): MTH, PATH and PROOF/SUBPROOF exactly as
the RFC states them, over a list of leaf hashes.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

__all__ = ["Reference", "ref_leaf_hash"]


def ref_leaf_hash(entry: bytes) -> bytes:
    """``SHA-256(0x00 || entry)``."""
    return hashlib.sha256(b"\x00" + entry).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class Reference:
    """The RFC's definitions over fixed leaf hashes ``D``."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.leaves = leaves
        self.mth = lru_cache(maxsize=None)(self._mth)

    def _mth(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi])."""
        n = hi - lo
        if n == 0:
            return hashlib.sha256(b"").digest()
        if n == 1:
            return self.leaves[lo]
        k = _split(n)
        return _node(self.mth(lo, lo + k), self.mth(lo + k, hi))

    def root(self, size: int) -> bytes:
        return self.mth(0, size)

    def path(self, m: int, lo: int, hi: int) -> list[bytes]:
        """PATH(m, D[lo:hi]), m relative to lo."""
        n = hi - lo
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return [*self.path(m, lo, lo + k), self.mth(lo + k, hi)]
        return [*self.path(m - k, lo + k, hi), self.mth(lo, lo + k)]

    def inclusion(self, index: int, size: int) -> list[bytes]:
        return self.path(index, 0, size)

    def subproof(self, m: int, lo: int, hi: int, *, b: bool) -> list[bytes]:
        """SUBPROOF(m, D[lo:hi], b)."""
        n = hi - lo
        if m == n:
            return [] if b else [self.mth(lo, hi)]
        k = _split(n)
        if m <= k:
            return [*self.subproof(m, lo, lo + k, b=b), self.mth(lo + k, hi)]
        return [*self.subproof(m - k, lo + k, hi, b=False), self.mth(lo, lo + k)]

    def consistency(self, old: int, new: int) -> list[bytes]:
        """PROOF(old, D[0:new]); empty for old 0 or old == new."""
        if old in (0, new):
            return []
        return self.subproof(old, 0, new, b=True)
