"""The one place where tpm2-pytss errors become TrustFleet errors (imports tpm2-pytss)."""

from __future__ import annotations

from tpm2_pytss import TSS2_Exception
from tpm2_pytss.constants import TPM2_RC, TSS2_RC

from trustfleet.errors import TrustFleetError, Unavailable, VerificationFailed

__all__ = ["TSS2_Exception", "is_policy_failure", "is_tpm_failure", "refused_input", "translate"]

_LAYER_MASK = int(TSS2_RC.RC_LAYER_MASK)
_TPM_LAYER = 0
_POLICY_ERRORS = frozenset({int(TPM2_RC.POLICY_FAIL), int(TPM2_RC.PCR_CHANGED)})
_INPUT_ERRORS = frozenset(
    int(rc)
    for rc in (TPM2_RC.INTEGRITY, TPM2_RC.VALUE, TPM2_RC.SIZE, TPM2_RC.ECC_POINT, TPM2_RC.KEY)
)


def _from_tpm(exc: TSS2_Exception) -> bool:
    return (int(exc.rc) & _LAYER_MASK) == _TPM_LAYER


def refused_input(exc: TSS2_Exception) -> bool:
    """Whether the TPM refused an input's content (integrity, value, size, point)."""
    return _from_tpm(exc) and int(exc.error) in _INPUT_ERRORS


def is_tpm_failure(exc: TSS2_Exception) -> bool:
    """Whether the TPM answered TPM_RC_FAILURE (failure mode, or libtpms refusing a decrypt)."""
    return _from_tpm(exc) and int(exc.error) == int(TPM2_RC.FAILURE)


def is_policy_failure(exc: TSS2_Exception) -> bool:
    """Whether the TPM refused an authorization because a policy did not hold."""
    return _from_tpm(exc) and int(exc.error) in _POLICY_ERRORS


def translate(exc: TSS2_Exception, *, action: str, code: str) -> TrustFleetError:
    """Turn a tpm2-pytss error into a TrustFleet error.

    Args:
        exc: The tpm2-pytss exception.
        action: What we were doing, e.g. ``"reading the EK certificate"``.
        code: The stable code for a TPM refusal during this action (``tpm.*``).

    Returns:
        The error to raise ``from exc``: ``Unavailable`` with code ``tpm.unreachable`` when
        the TPM cannot be reached, ``VerificationFailed`` for a policy or integrity refusal,
        ``Unavailable`` with ``code`` otherwise.
    """
    if not _from_tpm(exc):
        return Unavailable(
            f"the TPM could not be reached while {action} ({exc})",
            hint="check that the TPM (or swtpm) runs and the TCTI string points at it",
            code="tpm.unreachable",
        )
    if is_policy_failure(exc):
        return VerificationFailed(
            f"the TPM refused the authorization policy while {action}",
            hint="the PCRs do not hold the values the object is bound to",
            code=code,
        )
    if refused_input(exc):
        return VerificationFailed(
            f"the TPM found the input's integrity check failed while {action}",
            hint="the data was made for another TPM or key, or was altered",
            code=code,
        )
    return Unavailable(
        f"the TPM refused the command while {action} ({exc})",
        hint="check the TPM state (keys, hierarchy authorization)",
        code=code,
    )
