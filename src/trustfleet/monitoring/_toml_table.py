"""A TOML table read key by key, for the scenario reader; unknown keys are errors naming them."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

from trustfleet.errors import InvalidInput

MAX_MEMBERS: Final = 256
"""Most members one profile or effect may list or add to one window."""
SCENARIO_CODE: Final = "monitor.scenario.invalid"
SCENARIO_HINT: Final = "see 'Scenarios and evaluation' in docs/monitoring.md for the format"

T = TypeVar("T")


class Table:
    """A TOML table read key by key; unknown keys are errors naming them."""

    def __init__(self, data: object, *, where: str, source: str) -> None:
        self.where, self.source = where, source
        if not isinstance(data, Mapping):
            raise self.error("must be a table")
        self.data: Mapping[str, Any] = data
        self.used: set[str] = set()

    def error(self, problem: str, key: str | None = None) -> InvalidInput:
        path = f"{self.where}.{key}" if key and self.where else (key or self.where or "(top)")
        return InvalidInput(
            f"{self.source}: {path} {problem}", hint=SCENARIO_HINT, code=SCENARIO_CODE
        )

    def get(self, key: str, kind: type[T] | tuple[type, ...], default: T) -> T:
        self.used.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        bad_bool = isinstance(value, bool) and kind in (int, float, (int, float))
        if bad_bool or not isinstance(value, kind):
            raise self.error(f"has the wrong type ({type(value).__name__})", key)
        return value  # type: ignore[return-value]  # checked by isinstance above

    def number(self, key: str, default: float, *, low: float, high: float) -> float:
        value = float(self.get(key, (int, float), default))
        if not (math.isfinite(value) and low <= value <= high):
            raise self.error(f"must be between {low:g} and {high:g} (got {value:g})", key)
        return value

    def integer(self, key: str, default: int, *, low: int, high: int) -> int:
        value = self.get(key, int, default)
        if not low <= value <= high:
            raise self.error(f"must be between {low} and {high} (got {value})", key)
        return value

    def strings(self, key: str, *, check: Callable[[str], bool] | None = None) -> tuple[str, ...]:
        items = self.get(key, list, [])
        if len(items) > MAX_MEMBERS:
            raise self.error(f"has more than {MAX_MEMBERS} members", key)
        for item in items:
            if not isinstance(item, str) or not 0 < len(item) <= 200:
                raise self.error("must list strings of 1..200 characters", key)
            if check and not check(item):
                raise self.error(f"has an invalid member {item!r}", key)
        return tuple(items)

    def ports(self, key: str) -> tuple[int, ...]:
        items = self.get(key, list, [])
        if len(items) > MAX_MEMBERS or not all(
            isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 65535 for p in items
        ):
            raise self.error(f"must list at most {MAX_MEMBERS} ports 1..65535", key)
        return tuple(items)

    def tables(self, key: str, *, most: int) -> list[Table]:
        items = self.get(key, list, [])
        if len(items) > most:
            raise self.error(f"has more than {most} entries", key)
        return [
            Table(t, where=f"{self._join(key)}[{i}]", source=self.source)
            for i, t in enumerate(items)
        ]

    def table(self, key: str) -> Table:
        return Table(self.get(key, dict, {}), where=self._join(key), source=self.source)

    def _join(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.error("is not a known key", unknown[0])
