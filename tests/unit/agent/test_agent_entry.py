"""The device entry point stays lean: an enrolled agent never loads `cryptography` or the
token library (they cost ≈ 20 MB of resident memory; the target is ≤ 48 MB), and usage
mistakes are one line with a hint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

AGENT = Path(sys.executable).parent / "trustfleet-agent"


def test_steady_state_modules_do_not_import_cryptography_or_pkcs11() -> None:
    code = (
        "import sys, trustfleet.agent.__main__, trustfleet.agent.runner, trustfleet.agent.link;"
        "heavy = [m for m in ('cryptography', 'pkcs11', 'typer', 'rich', 'sqlalchemy')"
        " if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_usage_mistake_is_one_line_with_a_hint() -> None:
    proc = subprocess.run([str(AGENT), "run"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--device" in lines[0] and "Hint" in lines[0]


def test_missing_device_folder_is_one_readable_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(AGENT), "run", "--device", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 3
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
