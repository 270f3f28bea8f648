"""The one translation of tuf/securesystemslib exceptions into ``ota.tuf.*`` errors."""

from __future__ import annotations

import pytest
from securesystemslib.exceptions import FormatError
from tuf.api import exceptions

from trustfleet.agent.updater._tuferrors import translate
from trustfleet.errors import InvalidInput, TrustFleetError, Unavailable, VerificationFailed

VF, UN = VerificationFailed, Unavailable
E = exceptions
CASES: dict[str, tuple[BaseException, type[TrustFleetError], str]] = {
    "expired": (E.ExpiredMetadataError("timestamp.json is expired"), VF, "expired"),
    "unsigned": (E.UnsignedMetadataError("targets was signed by 0/1 keys"), VF, "signature"),
    "ts-rollback": (E.BadVersionNumberError("New timestamp version 1 must be >= 2"), VF,
                    "rollback"),
    "snapshot-rollback": (E.BadVersionNumberError("New snapshot version must be >= 2, got 1"),
                          VF, "rollback"),
    "listed-rollback": (E.BadVersionNumberError("Expected targets.json version 1, got 2."), VF,
                        "rollback"),
    "older-root": (E.BadVersionNumberError("Expected root version 3 instead got version 1"), VF,
                   "rollback"),
    "skipped-root": (E.BadVersionNumberError("Expected root version 2 instead got version 5"),
                     VF, "mismatch"),
    "mix-and-match": (E.BadVersionNumberError("Expected targets v3, got v2."), VF, "mismatch"),
    "meta-length": (E.LengthOrHashMismatchError("Observed length 5 does not match expected "
                                                "length 4"), VF, "length"),
    "meta-hash": (E.LengthOrHashMismatchError("Observed hash aa does not match expected hash"),
                  VF, "hash"),
    "endless": (E.DownloadLengthMismatchError("Downloaded 20000 bytes exceeding 16384"), VF,
                "length"),
    "http-404": (E.DownloadHTTPError("HTTP status 404", 404), UN, "unavailable"),
    "slow": (E.SlowRetrievalError("silent"), UN, "unavailable"),
    "malformed": (E.RepositoryError("Expected 'targets', got 'root'"), VF, "invalid"),
    "sslib-format": (FormatError("bad key"), VF, "signature"),
    "disk": (PermissionError(13, "Permission denied"), UN, "storage"),
    "other": (ValueError("odd"), VF, "invalid"),
}  # fmt: skip


@pytest.mark.parametrize(("exc", "category", "code"), CASES.values(), ids=CASES.keys())
def test_translation(exc: BaseException, category: type[TrustFleetError], code: str) -> None:
    error = translate(exc, doing="refreshing TUF metadata")
    assert type(error) is category
    assert error.code == f"ota.tuf.{code}"
    assert error.hint
    assert error.one_line().startswith("refreshing TUF metadata")
    assert "\n" not in error.one_line()


def test_an_error_a_fetcher_raised_is_kept_through_ngclient_wrapping() -> None:
    own = InvalidInput("http://x is not an https URL", hint="use https")
    try:
        try:
            raise own
        except InvalidInput as inner:
            raise exceptions.DownloadError("Failed to download http://x") from inner
    except exceptions.DownloadError as wrapped:
        assert translate(wrapped, doing="refreshing") is own
