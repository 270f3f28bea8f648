"""The dependency closure behind the device-distribution test (tests/support/devicedist.py).

Pure: requirement lines over a table of made-up distributions. The e2e test fails when the
device installation holds a server-only distribution; these cases show the closure finds one
however deep it hides (a grown closure), honours markers and extras, and survives cycles.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from support.devicedist import WheelMeta, closure, server_only_names

_TABLE: Mapping[str, Sequence[str]] = {
    "agent": ["awscrt>=0.20", "tuf>=5", "pydantic>=2"],
    "tuf": ["securesystemslib>=1", "urllib3"],
    "securesystemslib": ["cryptography; extra == 'crypto'", "pyspx; extra == 'pqc'"],
    "pydantic": ["pydantic-core==2.1", "typing_extensions>=4"],
    "server": ["agent==1.0", "SQLAlchemy>=2", "typer", "uvloop; sys_platform == 'nt'"],
    "sqlalchemy": ["greenlet; python_version < '3'", "typing-extensions"],
    "typer": ["click", "rich"],
    "rich": ["pygments", "markdown-it-py"],
    "markdown-it-py": ["mdurl", "rich"],  # a cycle
    "grown": ["tuf", "helper"],
    "helper": ["typer"],  # a server package two levels down
}


def _requires(name: str) -> Sequence[str] | None:
    return _TABLE.get(name)


def _closure(*lines: str) -> frozenset[str]:
    return closure(lines, requires=_requires)


def test_the_device_closure_is_what_it_pulls_in() -> None:
    assert _closure("agent") == {
        "agent", "awscrt", "tuf", "securesystemslib", "urllib3", "pydantic", "pydantic-core",
        "typing-extensions",
    }  # fmt: skip


def test_server_only_is_the_server_closure_minus_the_device_closure() -> None:
    only = _closure("server") - _closure("agent")
    assert only == {
        "server", "sqlalchemy", "typer", "click", "rich", "pygments", "markdown-it-py", "mdurl",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["securesystemslib[crypto]"], {"securesystemslib", "cryptography"}),
        (["securesystemslib"], {"securesystemslib"}),
        (["uvloop; sys_platform == 'nt'"], set()),
        (["Typing_Extensions"], {"typing-extensions"}),
        (["unknown-dist>=1"], {"unknown-dist"}),
    ],
    ids=["extra-taken", "extra-not-asked", "marker-false", "names-canonical", "unknown-named"],
)
def test_markers_extras_and_names(lines: list[str], expected: set[str]) -> None:
    assert _closure(*lines) == expected


_DEVICE = WheelMeta(name="agent", version="1.0", requires=tuple(_TABLE["agent"]))
_SERVER = WheelMeta(name="server", version="1.0", requires=tuple(_TABLE["server"]))


def _device_with(*lines: str) -> WheelMeta:
    return WheelMeta(name="agent", version="1.0", requires=(*_DEVICE.requires, *lines))


def test_server_only_names() -> None:
    only = server_only_names(device=_DEVICE, server=_SERVER, requires=_requires)
    assert only == {
        "server", "sqlalchemy", "typer", "uvloop", "click", "rich", "pygments",
        "markdown-it-py", "mdurl",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("grown_by", "caught"),
    [
        ("typer>=0.9", {"typer", "click", "rich", "pygments", "markdown-it-py", "mdurl"}),
        ("grown", {"typer"}),  # what the server names is caught, however deep
        ("SQLAlchemy", {"sqlalchemy"}),
    ],
    ids=["a-server-requirement-named", "two-levels-down", "the-store"],
)
def test_a_grown_device_closure_is_caught(grown_by: str, caught: set[str]) -> None:
    """A device requirement that is, or pulls in, a server package: the grown device's closure
    meets the server-only names however the device's own requirements changed."""
    device = _device_with(grown_by)
    only = server_only_names(device=device, server=_SERVER, requires=_requires)
    assert closure(device.requires, requires=_requires) & only == caught
