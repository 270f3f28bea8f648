"""Return to service (docs/lifecycle.md): which folders may be reprovisioned, and the lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from trustfleet.errors import Conflict, InvalidInput
from trustfleet.services.reprovision import MARKER, check_wiped, folder_lock


def test_a_folder_without_the_wipe_marker_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_wiped(tmp_path)
    assert refused.value.code == "factory.reprovision.not_wiped"
    assert MARKER in refused.value.message


def test_a_file_or_a_link_is_no_device_folder(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    (tmp_path / "alink").symlink_to(tmp_path)
    for path in (tmp_path / "afile", tmp_path / "alink", tmp_path / "absent"):
        with pytest.raises(InvalidInput, match="is not a device folder"):
            check_wiped(path)


def test_two_reprovisions_of_one_folder_exclude_each_other(tmp_path: Path) -> None:
    with folder_lock(tmp_path), pytest.raises(Conflict) as busy, folder_lock(tmp_path):
        pass
    assert busy.value.code == "factory.reprovision.busy"
    with folder_lock(tmp_path):  # released
        pass
