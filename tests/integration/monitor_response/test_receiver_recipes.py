"""The receiver recipes of docs/monitoring.md verify a real signature: the openssl one run by
bash, the standard-library one run by Python (so the documentation stays true)."""

from __future__ import annotations

import hashlib
import hmac
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from trustfleet.monitoring.notify_format import webhook_signature

pytestmark = pytest.mark.integration

DOC = (Path(__file__).resolve().parents[3] / "docs" / "monitoring.md").read_text()
SECRET = b"recipe-secret"
BODY = b'{"alert_id":1,"event_id":"e1","kind":"monitor.x"}'
TS = 1_767_000_000


def _block(after: str, lang: str) -> str:
    match = re.search(re.escape(after) + r".*?```" + lang + r"\n(.*?)```", DOC, flags=re.S)
    assert match, f"docs/monitoring.md has a {lang} block after {after!r}"
    return match.group(1)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssl_recipe(tmp_path: Path) -> None:
    header = webhook_signature(SECRET, BODY, timestamp=TS)
    (tmp_path / "body.json").write_bytes(BODY)
    (tmp_path / "secret").write_bytes(SECRET)
    script = f"header='{header}'\n" + _block("and with openssl", "sh")
    out = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=30,
        check=True,
    )  # fmt: skip
    assert out.stdout.strip() == header.split("v1=")[1]


def test_standard_library_recipe() -> None:
    header = webhook_signature(SECRET, BODY, timestamp=TS)
    code = _block("or with the standard library alone", "python")
    scope: dict[str, object] = {"header": header, "secret": SECRET, "raw_body": BODY}
    exec(code.replace("time.time()", str(TS + 10)), scope)  # noqa: S102  # the doc's own recipe
    assert scope["ok"] is True
    assert scope["mac"] == hmac.new(SECRET, f"{TS}.".encode() + BODY, hashlib.sha256).hexdigest()
