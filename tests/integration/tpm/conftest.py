"""Fixtures for TPM tests against a real swtpm, one per test, started from a manufactured copy.

The manufactured TPMs and the ``swtpm`` fixture are support/swtpm.py's (a plugin of the root
conftest); here: the tools these tests need, and a ``Tpm`` connected to a copy of either TPM.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.swtpm import clone_state
from support.tools import require_tools
from trustfleet.keystore.tpm import SwtpmInstance, Tpm


@pytest.fixture(scope="session", autouse=True)
def _needs_swtpm() -> None:
    require_tools(
        "swtpm", "swtpm_setup", "tpm2_quote", hint="apt-get install swtpm swtpm-tools tpm2-tools"
    )


@pytest.fixture
def tpm(swtpm: SwtpmInstance) -> Iterator[Tpm]:
    """A ``Tpm`` connected to :func:`swtpm`."""
    with Tpm(tcti=swtpm.tcti) as connection:
        yield connection


@pytest.fixture
def other_tpm(tmp_path: Path, other_manufactured_tpm: Path) -> Iterator[Tpm]:
    """A ``Tpm`` on a running copy of the second TPM."""
    state = clone_state(other_manufactured_tpm, tmp_path / "other")
    with SwtpmInstance(state) as instance, Tpm(tcti=instance.tcti) as connection:
        yield connection
