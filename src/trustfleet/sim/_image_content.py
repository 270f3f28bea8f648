"""Bytes of simulated firmware files: ELF-like binaries, configs, data pages, compressed blobs.

Every generator is a pure function of its arguments (a :class:`random.Random` seeded by a
string is deterministic across runs and platforms), and fast enough to fill 64 MiB in a few
seconds without numpy: code is drawn from a shared vocabulary of instruction snippets (so it
repeats like real machine code and compresses ~2-3x), blobs are random bytes (like the
``.gz``/``.png`` files of a real root filesystem), data files are 4 KiB pages of records with
free space at their ends.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

__all__ = ["FileKind", "generate", "rng_for", "vocabulary"]

FileKind = Literal["bin", "blob", "cfg", "data"]

_WORDS = (
    "net",
    "wifi",
    "modem",
    "gpio",
    "sensor",
    "temp",
    "power",
    "boot",
    "log",
    "audit",
    "crypto",
    "tls",
    "mqtt",
    "ota",
    "update",
    "agent",
    "watchdog",
    "clock",
    "rtc",
    "usb",
    "serial",
    "spi",
    "i2c",
    "flash",
    "nand",
    "emmc",
    "storage",
    "cache",
    "kernel",
    "driver",
    "config",
    "device",
    "fleet",
    "metric",
    "alert",
    "health",
    "timer",
    "queue",
    "buffer",
    "socket",
    "stream",
    "frame",
    "packet",
    "route",
    "dns",
    "dhcp",
    "ntp",
    "firewall",
    "policy",
    "token",
    "cert",
    "key",
    "store",
    "backup",
    "restore",
    "limit",
    "retry",
    "interval",
)
_KEYS = tuple(f"{a}.{b}" for a in _WORDS for b in _WORDS)
_VALUES = (*_WORDS, "true", "false", *(str(n * 7) for n in range(200)))
_VOCAB_SNIPPETS = 8192
_PAGE = 4096
_RECORD = struct.Struct("<IIHHf12x")
_SYMBOL = struct.Struct("<IQI")


def rng_for(seed: str) -> random.Random:
    """A generator seeded by a string: reproducible everywhere (simulated content only)."""
    return random.Random(seed)  # noqa: S311 - reproducible simulated bytes, not secrets


@lru_cache(maxsize=8)
def vocabulary(seed: str) -> tuple[bytes, ...]:
    """The instruction-snippet vocabulary shared by every binary of an image lineage."""
    rng = rng_for(f"{seed}/vocab")
    opcodes = [rng.randbytes(2) for _ in range(48)]
    snippets = []
    for _ in range(_VOCAB_SNIPPETS):
        count = rng.randint(2, 10)
        parts = [rng.choice(opcodes) + rng.randbytes(2) for _ in range(count)]
        snippets.append(b"".join(parts))
    return tuple(snippets)


def generate(kind: FileKind, *, size: int, seed: str, vocab: Sequence[bytes]) -> bytes:
    """Exactly ``size`` bytes of a file of this kind, a pure function of the arguments."""
    rng = rng_for(seed)
    if size <= 0:
        return b""
    if kind == "bin":
        data = _binary(rng, size, vocab)
    elif kind == "blob":
        data = _blob(rng, size)
    elif kind == "cfg":
        data = _text(rng, size)
    else:
        data = _pages(rng, size)
    return data[:size]


def _code(rng: random.Random, size: int, vocab: Sequence[bytes]) -> bytes:
    count = size // 16 + 1
    immediates = rng.randbytes(2 * count)
    parts = rng.choices(vocab, k=count)
    out = b"".join(p + immediates[2 * i : 2 * i + 2] for i, p in enumerate(parts))
    while len(out) < size:  # short snippets: top up (rare)
        out += b"".join(rng.choices(vocab, k=count // 4 + 1))
    return out[:size]


def _binary(rng: random.Random, size: int, vocab: Sequence[bytes]) -> bytes:
    header = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + struct.pack("<HHIQQQ", 3, 183, 1, 0, 64, 0)
    header += rng.randbytes(16) + bytes(8)
    text_len = int(size * 0.7)
    rodata_len = int(size * 0.15)
    text = _code(rng, text_len, vocab)
    rodata = _text(rng, rodata_len)
    count = max(0, size - len(header) - len(text) - len(rodata)) // _SYMBOL.size + 1
    steps = rng.randbytes(count)
    address = 0x400000 + rng.randrange(0, 1 << 16) * 16
    symbols = []
    for i, step in enumerate(steps):  # symbol table: name offset, address, size (monotonic)
        symbols.append(_SYMBOL.pack(i * 24, address, 16 + 16 * step))
        address += 16 + 16 * step
    symtab = b"".join(symbols)
    return header + text + rodata + symtab


def _blob(rng: random.Random, size: int) -> bytes:
    magic = rng.choice((b"\x1f\x8b\x08\x00", b"\x89PNG\r\n\x1a\n", b"(\xb5/\xfd"))
    return magic + rng.randbytes(size)


def _text(rng: random.Random, size: int) -> bytes:
    out = b""
    while len(out) < size:
        count = (size - len(out)) // 20 + 1
        keys = rng.choices(_KEYS, k=count)
        values = rng.choices(_VALUES, k=count)
        out += "".join(f"{k} = {v}\n" for k, v in zip(keys, values, strict=True)).encode()
    return out


def _pages(rng: random.Random, size: int) -> bytes:
    out = bytearray()
    row_id = rng.randrange(0, 1 << 20)
    stamp = 1_700_000_000 + rng.randrange(0, 1 << 24)
    while len(out) < size:
        rows = rng.randint(40, 120)
        page = bytearray(struct.pack("<4sHH", b"PAGE", rows, 0))
        noise = rng.randbytes(2 * rows)
        for i in range(rows):
            row_id += 1
            stamp += 1 + noise[2 * i] % 90
            page += _RECORD.pack(row_id, stamp, noise[2 * i + 1] % 64, 0, noise[2 * i] / 4)
        out += page[:_PAGE] + bytes(max(0, _PAGE - len(page)))
    return bytes(out)
