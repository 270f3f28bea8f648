"""Fixtures of the management API tests: one real server per module and a few devices."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from apikit import ApiKit, api_server

from support.server import enroll_software, make_software_device


@dataclass(frozen=True)
class Fleet:
    """Devices of the API tests' home: ``enrolled`` have an LDevID, ``registered`` do not."""

    enrolled: tuple[str, ...]
    registered: tuple[str, ...]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiKit]:
    with api_server(tmp_path_factory.mktemp("api")) as kit:
        yield kit


@pytest.fixture(scope="module")
def fleet(api: ApiKit, tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    work = tmp_path_factory.mktemp("devices")
    enrolled = []
    for _ in range(3):
        device = make_software_device(api.server, work, prefix="api")
        enroll_software(api.server, device, work)
        enrolled.append(device.device_id)
    registered = [make_software_device(api.server, work, prefix="new").device_id for _ in range(2)]
    return Fleet(enrolled=tuple(sorted(enrolled)), registered=tuple(sorted(registered)))
