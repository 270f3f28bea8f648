"""``release verify``'s table: which check a finding refuses, and what is not checked after it."""

from __future__ import annotations

import pytest

from trustfleet.ota.release_verify import ReleaseFinding, ReleaseVerdict
from trustfleet.services.release_verify import checks_of


def _verdict(*codes: str, image: str | None = "ab" * 32) -> ReleaseVerdict:
    return ReleaseVerdict(
        model="sim-v1",
        version="1.0.0",
        findings=tuple(ReleaseFinding(code, f"{code} happened") for code in codes),
        image_sha256=image,
        sbom=None,
        provenance=None,
        signed_by=(),
    )


def _status(verdict: ReleaseVerdict) -> dict[str, str]:
    return {name: status for name, status, _ in checks_of(verdict)}


CASES = {
    "all-ok": ((), "ab" * 32, {}),
    "tuf": (("release.tuf.metadata",), None, {"TUF metadata": "refused", "SBOM": "not checked"}),
    "manifest-digest": (("release.manifest.digest",), None,
                        {"manifest": "refused", "provenance builder": "not checked"}),
    "manifest-mismatch-reads-on": (("release.manifest.mismatch",), "ab" * 32,
                                   {"manifest": "refused", "SBOM": "ok"}),
    "sbom": (("release.sbom.digest",), "ab" * 32, {"SBOM": "refused", "provenance subject": "ok"}),
    "signature": (("release.provenance.signature",), "ab" * 32,
                  {"provenance signature": "refused", "provenance subject": "not checked"}),
    "subject": (("release.provenance.subject",), "ab" * 32,
                {"provenance subject": "refused", "provenance builder": "not checked"}),
    "builder": (("release.provenance.builder",), "ab" * 32, {"provenance builder": "refused"}),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_each_finding_refuses_its_check(
    case: tuple[tuple[str, ...], str | None, dict[str, str]],
) -> None:
    codes, image, expected = case
    status = _status(_verdict(*codes, image=image))
    assert len(status) == 7
    for name, want in expected.items():
        assert status[name] == want, (name, status)
    assert {v for k, v in status.items() if k not in expected} <= {"ok", "not checked"}
    if not codes:
        assert set(status.values()) == {"ok"}


def test_the_reason_names_the_code_and_message() -> None:
    rows = checks_of(_verdict("release.sbom.count", "release.sbom.invalid"))
    reason = next(r for name, _, r in rows if name == "SBOM")
    assert "release.sbom.count: release.sbom.count happened" in reason
    assert "release.sbom.invalid" in reason
