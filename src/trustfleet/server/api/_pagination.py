"""Pages of the management API: ``?limit=&cursor=`` in, ``{"items", "next_cursor"}`` out."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Final, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

from trustfleet.services.queries import Page
from trustfleet.store import MAX_LIST_LIMIT

__all__ = ["DEFAULT_LIMIT", "ItemsPage", "Paging", "PagingDep", "page_of"]

DEFAULT_LIMIT: Final = 50
CURSOR_PATTERN: Final = r"^[0-9]{1,12}$"
"""A cursor as the services give them out (an offset; ``queries.parse_cursor``)."""
_R = TypeVar("_R")
_M = TypeVar("_M", bound=BaseModel)


class ItemsPage(BaseModel, Generic[_M]):
    """One page of a list; pass ``next_cursor`` back as ``cursor`` (null on the last page)."""

    items: list[_M]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Paging:
    """The page a request asks for."""

    limit: int
    cursor: str | None


def _paging(
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIST_LIMIT, description="Items per page.")
    ] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="next_cursor of the previous page."),
    ] = None,
) -> Paging:
    return Paging(limit=limit, cursor=cursor or None)


PagingDep = Annotated[Paging, Depends(_paging)]


def page_of(page: Page[_R], present: Callable[[_R], _M]) -> ItemsPage[_M]:
    """A service's page as the API's: each item presented."""
    return ItemsPage[_M](items=_all(page.items, present), next_cursor=page.next_cursor)


def _all(items: Iterable[_R], present: Callable[[_R], _M]) -> list[_M]:
    return [present(item) for item in items]
