"""Pure parts of operator authentication: throttle arithmetic, TOTP window and replay, token
format, the token role rule, CSRF derivation, the relying party, password bounds."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from trustfleet import rbac
from trustfleet.errors import InvalidInput
from trustfleet.services import _passwords as passwords
from trustfleet.services import _throttle as throttle
from trustfleet.services import _totp as totp
from trustfleet.services._passkeys import relying_party
from trustfleet.services._sessions import csrf_of, session_hash
from trustfleet.services.api_tokens import format_token, may_mint, parse_token
from trustfleet.settings.sections import OperatorSettings
from trustfleet.store import ThrottleRecord
from trustfleet.store._operator_models import OPERATOR_ROLE_VALUES

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SETTINGS = OperatorSettings(max_failures=3, failure_window_s=100, lockout_s=50)


def test_the_store_allows_exactly_the_roles_of_rbac() -> None:
    assert OPERATOR_ROLE_VALUES == rbac.ROLES


def test_the_default_argon2id_parameters_are_rfc_9106s_second_option() -> None:
    defaults = OperatorSettings()
    assert (defaults.argon2_time_cost, defaults.argon2_memory_kib, defaults.argon2_parallelism) == (
        3, 64 * 1024, 4,
    )  # fmt: skip
    cheap = OperatorSettings(argon2_time_cost=1, argon2_memory_kib=8, argon2_parallelism=1)
    assert passwords.hash_password(cheap, "x" * 12).startswith("$argon2id$v=19$m=8,t=1,p=1$")
    with pytest.raises(ValueError, match="8 KiB per lane"):
        OperatorSettings(argon2_memory_kib=16, argon2_parallelism=4)


def _fail(record: ThrottleRecord | None, at: datetime) -> ThrottleRecord:
    return throttle.after_failure(record, "login:ann", settings=SETTINGS, now=at)


def test_the_third_failure_in_the_window_locks_for_the_lockout() -> None:
    one = _fail(None, NOW)
    two = _fail(one, NOW + timedelta(seconds=10))
    three = _fail(two, NOW + timedelta(seconds=20))
    assert (one.failures, two.failures, three.failures) == (1, 2, 3)
    assert two.locked_until is None and two.window_started_at == NOW
    assert three.locked_until == NOW + timedelta(seconds=70)
    assert throttle.is_locked(three, now=NOW + timedelta(seconds=69))
    assert not throttle.is_locked(three, now=NOW + timedelta(seconds=70))
    assert not throttle.is_locked(None, now=NOW)


def test_a_failure_after_the_window_or_the_lockout_starts_over() -> None:
    two = _fail(_fail(None, NOW), NOW + timedelta(seconds=1))
    late = _fail(two, NOW + timedelta(seconds=100))
    assert (late.failures, late.window_started_at, late.locked_until) == (
        1, NOW + timedelta(seconds=100), None,
    )  # fmt: skip
    locked = _fail(_fail(two, NOW + timedelta(seconds=2)), NOW + timedelta(seconds=3))
    after = _fail(locked, NOW + timedelta(seconds=60))  # lockout ended at 52
    assert (after.failures, after.locked_until) == (1, None)


@pytest.mark.parametrize(
    ("origin", "address"),
    [
        ("https POST /console/login from 192.0.2.7:4000", "192.0.2.7"),
        ("https POST /api/v1/x from [2001:db8::1]:443", "2001:db8::1"),
        ("est 10.0.0.7", "est 10.0.0.7"),
        ("cli host=ops1 pid=7", "cli host=ops1 pid=7"),
    ],
)
def test_the_address_key_comes_from_the_origin(origin: str, address: str) -> None:
    assert throttle.address_of(origin) == address
    assert throttle.keys_for("ann", origin) == ("login:ann", f"addr:{address}")


def test_totp_matches_one_step_either_side_and_never_a_used_step() -> None:
    seed = totp.new_secret()
    assert len(base64.b32decode(seed)) == 20  # 160 bits
    step = int(NOW.timestamp()) // 30
    code = pyotp.TOTP(seed).at(NOW)
    assert totp.matching_step(seed, code, now=NOW) == step
    assert totp.matching_step(seed, f" {code} ", now=NOW) == step
    assert totp.matching_step(seed, code, now=NOW + timedelta(seconds=30)) == step
    assert totp.matching_step(seed, code, now=NOW - timedelta(seconds=30)) == step
    assert totp.matching_step(seed, code, now=NOW + timedelta(seconds=60)) is None
    assert totp.matching_step(seed, code, now=NOW, after=step) is None
    assert totp.matching_step(seed, code, now=NOW, after=step - 1) == step
    for bad in ("", "12345", "1234567", "abcdef", "١٢٣٤٥٦"):
        assert totp.matching_step(seed, bad, now=NOW) is None


def test_the_token_format_round_trips_and_nothing_else_parses() -> None:
    token = format_token("0123456789ab", "A" * 43)
    assert parse_token(token) == ("0123456789ab", "A" * 43)
    for bad in ("", "tf_", token + "A", token[:-1], "TF" + token[2:],
                "tf_0123456789AB_" + "A" * 43, "tf_0123456789ab-" + "A" * 43,
                "tf_0123456789ab_" + "A" * 42 + "=", "x" * 10_000):  # fmt: skip
        assert parse_token(bad) is None


@pytest.mark.parametrize("owner", rbac.OPERATOR_ROLES)
def test_a_token_role_holds_only_permissions_its_owner_has(owner: str) -> None:
    for role in rbac.ROLES:
        expected = rbac.permissions_of(role) <= rbac.permissions_of(owner)
        assert may_mint(owner, role) == expected
    assert may_mint(owner, owner)
    assert may_mint(owner, "metrics") == (owner in ("admin", "auditor"))
    assert not may_mint(owner, "root")


def test_the_csrf_token_is_the_hmac_of_the_label_under_the_session_secret() -> None:
    secret = "s" * 43
    mac = hmac.new(secret.encode(), b"trustfleet csrf v1", hashlib.sha256).digest()
    assert csrf_of(secret) == base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    assert csrf_of(secret) != csrf_of("t" * 43)
    assert session_hash(secret) == hashlib.sha256(secret.encode()).hexdigest()


@pytest.mark.parametrize(
    ("url", "rp"),
    [
        ("https://localhost:8443", ("localhost", "https://localhost:8443")),
        ("https://fleet.example", ("fleet.example", "https://fleet.example")),
        ("https://fleet.example:443/base/", ("fleet.example", "https://fleet.example")),
        ("https://[::1]:8443", ("::1", "https://[::1]:8443")),
    ],
)
def test_the_relying_party_comes_from_the_public_url(url: str, rp: tuple[str, str]) -> None:
    assert relying_party(url) == rp


def test_passwords_are_bounded_and_verified() -> None:
    cheap = OperatorSettings(argon2_time_cost=1, argon2_memory_kib=8, argon2_parallelism=1)
    for bad in ("x" * 11, "x" * 257, "twelve chars\n"):
        with pytest.raises(InvalidInput):
            passwords.check_new_password(bad)
    assert passwords.check_new_password("x" * 256) == "x" * 256
    stored = passwords.hash_password(cheap, "right password")
    assert passwords.verify_password(cheap, stored, "right password")
    assert not passwords.verify_password(cheap, stored, "wrong password")
    assert not passwords.verify_password(cheap, stored, "x" * 10_000)
    assert not passwords.verify_password(cheap, "not a hash", "right password")
    assert not passwords.needs_rehash(cheap, stored)
    assert passwords.needs_rehash(OperatorSettings(), stored)
    assert len(passwords.generate_password()) >= 20
