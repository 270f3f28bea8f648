"""Pure rules of the LwM2M backend: metric names, firmware results to campaign states."""

from __future__ import annotations

import pytest

from trustfleet.services._lwm2m_rules import campaign_state, metric_name


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/3303/0/5700", "temperature"),
        ("/3303/2/5700", "temperature_2"),
        ("/3/0/9", "battery_level"),
        ("/3/0/0", "lwm2m:/3/0/0"),
        ("/3303/0/5701", "lwm2m:/3303/0/5701"),
        ("/3303/0", None),
        ("/a/b/c", None),
        ("/3303/0/5700/../1", None),
        ("/123456/0/1", None),
    ],
    ids=["temp", "temp-inst2", "battery", "other", "unit", "instance", "letters", "dots", "long"],
)
def test_metric_name(path: str, name: str | None) -> None:
    assert metric_name(path) == name


@pytest.mark.parametrize(
    ("state", "result", "version", "expected"),
    [
        (0, 0, None, ("notified", None)),
        (1, 0, None, ("downloading", None)),
        (2, 0, None, ("installing", None)),
        (3, 0, None, ("installing", None)),
        (0, 1, "1.1.0", ("committed", None)),
        (0, 1, "1.0.0", ("installing", None)),
        (0, 5, None, ("failed", "integrity_check_failure")),
        (0, 9, None, ("failed", "unsupported_protocol")),
        (0, 42, None, ("failed", "result_42")),
    ],
    ids=[
        "idle",
        "downloading",
        "downloaded",
        "updating",
        "success",
        "success-old-version",
        "integrity",
        "protocol",
        "unknown-result",
    ],
)
def test_campaign_state(
    state: int, result: int, version: str | None, expected: tuple[str, str | None]
) -> None:
    assert campaign_state(state=state, result=result, version=version, target="1.1.0") == expected
