"""Fixtures of the LwM2M integration suites: the independent peers (Wakaama, coap-client)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.wakaama import WakaamaUnavailable, build_client


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One ``server run`` with ``[lwm2m] enabled`` per test module (a server takes tens of
    seconds to start); each test makes its own devices, so tests do not see each other's."""
    from lwm2mkit import lwm2m_server  # imports trustfleet.lwm2m.server (skips without it)

    with lwm2m_server(tmp_path_factory.mktemp("lwm2m-server")) as running:
        yield running


@pytest.fixture(scope="session")
def wakaama_binary() -> Path:
    """Wakaama's tinydtls example client, built once (skipped without cmake or a compiler)."""
    try:
        return build_client()
    except WakaamaUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def coap_client_installed() -> None:
    """Skip unless coap-client-openssl, SoftHSM2 and pkcs11-tool are installed."""
    for tool in ("coap-client-openssl", "softhsm2-util", "pkcs11-tool", "openssl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
