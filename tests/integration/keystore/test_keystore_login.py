"""Login against a real SoftHSM2 token: wrong PINs, PIN sources, shared login, open_key."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from keystore_support import SO_PIN, USER_PIN, self_signed_pem

from trustfleet.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from trustfleet.keystore import (
    PinSource,
    TokenSession,
    init_token,
    open_key,
    open_token,
    write_pin_file,
)

pytestmark = pytest.mark.integration

WRONG_PIN = "wrong-PIN-that-must-not-leak-7731"


def _assert_no_pin(error: BaseException, caplog: pytest.LogCaptureFixture, *pins: str) -> None:
    texts = [str(error), repr(error), caplog.text]
    if hasattr(error, "one_line"):
        texts.append(error.one_line())
    cause = error.__cause__
    while cause is not None:
        texts += [str(cause), repr(cause)]
        cause = cause.__cause__
    for pin in pins:
        assert all(pin not in text for text in texts)


def test_wrong_pin_is_permission_denied_without_the_pin(
    module: Path, conf: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    init_token(module=module, conf=conf, label="server", so_pin=SO_PIN, user_pin=USER_PIN)
    with pytest.raises(PermissionDenied) as info:
        open_token(module=module, label="server", pin=WRONG_PIN, conf=conf)
    assert str(info.value) == "token login failed for token 'server'"
    assert info.value.hint
    _assert_no_pin(info.value, caplog, WRONG_PIN, USER_PIN, SO_PIN)
    # The failed attempt left no session behind: switching configuration is allowed.
    with open_token(module=module, label="server", pin=USER_PIN, conf=conf) as session:
        assert session.label == "server"


def test_wrong_pin_while_token_is_logged_in(
    module: Path, conf: Path, token: TokenSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(PermissionDenied) as info:
        open_token(module=module, label="server", pin=WRONG_PIN, conf=conf)
    _assert_no_pin(info.value, caplog, WRONG_PIN, USER_PIN)


def test_unknown_token(module: Path, conf: Path, token: TokenSession) -> None:
    with pytest.raises(NotFound, match="no PKCS#11 token labelled 'absent'") as info:
        open_token(module=module, label="absent", pin=USER_PIN, conf=conf)
    assert info.value.hint


def test_two_sessions_share_the_login(module: Path, conf: Path, token: TokenSession) -> None:
    key = token.generate_ec_key("shared")
    second = open_token(module=module, label="server", pin=USER_PIN, conf=conf)
    assert second.ec_private_key(label="shared").public_key() == key.public_key()
    second.close()  # must not log the first session out
    signature = key.sign(b"still logged in", ec.ECDSA(hashes.SHA256()))
    key.public_key().verify(signature, b"still logged in", ec.ECDSA(hashes.SHA256()))


def test_pin_from_file_and_env(
    module: Path, conf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pin_file = write_pin_file(tmp_path / "user.pin", USER_PIN)
    init_token(
        module=module,
        conf=conf,
        label="server",
        so_pin=SO_PIN,
        user_pin=PinSource.parse(f"file:{pin_file}").read(),
    )
    monkeypatch.setenv("TF_KEYSTORE_TEST_PIN", USER_PIN)
    pin = PinSource.parse("env:TF_KEYSTORE_TEST_PIN").read()
    with open_token(module=module, label="server", pin=pin, conf=conf) as session:
        session.generate_ec_key("env-pin")


def test_duplicate_token_label(module: Path, conf: Path) -> None:
    init_token(module=module, conf=conf, label="server", so_pin=SO_PIN, user_pin=USER_PIN)
    with pytest.raises(Conflict, match="exists already"):
        init_token(module=module, conf=conf, label="server", so_pin=SO_PIN, user_pin=USER_PIN)


@pytest.mark.parametrize(
    ("label", "so_pin", "user_pin"),
    [("", SO_PIN, USER_PIN), ("x" * 33, SO_PIN, USER_PIN), ("t", SO_PIN, ""), ("t", SO_PIN, "1")],
    ids=["empty-label", "long-label", "empty-pin", "short-pin"],
)
def test_init_token_bad_input(
    module: Path, conf: Path, label: str, so_pin: str, user_pin: str
) -> None:
    with pytest.raises(InvalidInput):
        init_token(module=module, conf=conf, label=label, so_pin=so_pin, user_pin=user_pin)


def test_open_key_by_uri(module: Path, conf: Path, token: TokenSession) -> None:
    key = token.generate_ec_key("tls", curve="P-384")
    uri = f"{key.uri}?module-path={module}"
    with open_key(uri, pin=USER_PIN, conf=conf) as opened:
        assert opened.public_key() == key.public_key()
        signature = opened.sign(b"m", ec.ECDSA(hashes.SHA384()))
        key.public_key().verify(signature, b"m", ec.ECDSA(hashes.SHA384()))
    with pytest.raises(NotFound):
        open_key("pkcs11:token=server;object=absent", pin=USER_PIN, module=module, conf=conf)
    with pytest.raises(InvalidInput, match="name the token"):
        open_key("pkcs11:object=tls", pin=USER_PIN, module=module, conf=conf)
    # open_key closed its own sessions; the fixture's session is still fine.
    key.sign(b"m", ec.ECDSA(hashes.SHA384()))


_LOGIN_LOOP = """
import sys
from pathlib import Path
from trustfleet.keystore import open_token
from trustfleet.keystore._awscrt import token_tls_context
module, conf, cert = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[4])
pin, rounds = sys.argv[3], int(sys.argv[5])
for i in range(rounds):
    if i % 2:
        token_tls_context(module=module, conf=conf, token="server", key_label="busy", pin=pin,
                          cert=cert, trust=cert)
    else:
        open_token(module=module, label="server", pin=pin, conf=conf).close()
"""


def test_processes_logging_in_at_once_all_find_the_token(
    token: TokenSession, module: Path, conf: Path, tmp_path: Path
) -> None:
    """Regression: SoftHSM2 rewrites token.object on every login; another process looking the
    token up at that moment read half a file ("no token", CKR_GENERAL_ERROR), so a worker of
    ``server run`` failed to start now and then. Lookups and logins (ours and awscrt's) now
    hold one lock per configuration across processes."""
    key = token.generate_ec_key("busy")
    cert = tmp_path / "busy.pem"
    cert.write_bytes(self_signed_pem(key))
    token.close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _LOGIN_LOOP, str(module), str(conf), USER_PIN, str(cert), "80"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outcomes = [(p.wait(timeout=120), p.communicate()[1]) for p in procs]
    assert all(code == 0 for code, _err in outcomes), [err[-400:] for _c, err in outcomes]
