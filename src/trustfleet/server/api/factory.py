"""``/factory``: signing a device's CSR as its IDevID at provisioning (docs/operations.md)."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter

from trustfleet.server.api._auth import CallerDep, guarded
from trustfleet.server.api.schemas import CsrIn, IdevidOut
from trustfleet.services.factory import sign_csr

__all__ = ["router"]

router = APIRouter(tags=["factory"])


@router.post(
    "/factory/csr", response_model=IdevidOut, status_code=201, **guarded("devices.provision")
)
async def post_csr(caller: CallerDep, body: CsrIn) -> Any:
    """Register a device and sign its CSR (CN: the device id) as its IDevID."""
    provisioned = await caller.run(
        sign_csr, caller.rt, csr_bytes=body.csr_pem.encode("utf-8"), model=body.model,
        now=caller.clock(),
    )  # fmt: skip
    pem = provisioned.certificate.public_bytes(Encoding.PEM).decode("ascii")
    return IdevidOut(device_id=provisioned.device_id, certificate_pem=pem)
