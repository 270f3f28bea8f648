"""Independent readers of what we sign and write (issue 17 §3).

A release key generated inside SoftHSM2 signs a provenance envelope through ``Pkcs11Signer``;
securesystemslib's DSSE verifier, the in-toto library and openssl (over the PAE) verify it and
refuse the edited one, as we do. An envelope signed by securesystemslib's own DSSE writer is
accepted by us. cyclonedx-python-lib reads our image SBOM back.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cyclonedx.model.bom import Bom
from in_toto.exceptions import SignatureVerificationError
from in_toto.models.metadata import Envelope as InTotoEnvelope
from in_toto.models.metadata import Metadata
from securesystemslib import dsse as sslib_dsse
from securesystemslib.exceptions import VerificationError

from support.attestkit import LIMITS, release_files, sample_provenance
from trustfleet.errors import VerificationFailed
from trustfleet.ota.dsse import PAYLOAD_TYPE, pae, parse_envelope, render_envelope, sign_envelope
from trustfleet.ota.dsse import verify_envelope as our_verify
from trustfleet.ota.provenance import STATEMENT_TYPE, parse_statement, render_statement
from trustfleet.ota.release_verify import verify_release_chain
from trustfleet.ota.sbom import Component, check_sbom, cyclonedx_for_image
from trustfleet.ota.signer import Pkcs11Signer


def _signed(signer: Pkcs11Signer) -> bytes:
    return render_envelope(sign_envelope(render_statement(sample_provenance()), signer=signer))


def _edited(data: bytes) -> bytes:
    doc = json.loads(data)
    statement = base64.b64decode(doc["payload"]).replace(b"image.bin", b"evil.bin")
    doc["payload"] = base64.b64encode(statement).decode()
    return json.dumps(doc).encode()


def test_securesystemslib_and_in_toto_verify_our_envelope(release_signer: Pkcs11Signer) -> None:
    data = _signed(release_signer)
    key = release_signer.public_key
    accepted = sslib_dsse.Envelope.from_dict(json.loads(data)).verify([key], 1)
    assert list(accepted) == [key.keyid]
    envelope = Metadata.from_dict(json.loads(data))
    assert isinstance(envelope, InTotoEnvelope)
    envelope.verify_signature({"keyid": key.keyid, **key.to_dict()})
    assert json.loads(envelope.payload)["_type"] == STATEMENT_TYPE
    assert parse_statement(envelope.payload, max_bytes=LIMITS.max_provenance_bytes).builder_id


def test_all_readers_refuse_the_edited_envelope(release_signer: Pkcs11Signer) -> None:
    edited = _edited(_signed(release_signer))
    key = release_signer.public_key
    with pytest.raises(VerificationFailed):
        our_verify(parse_envelope(edited, max_bytes=1 << 20), keys={key.keyid: key})
    with pytest.raises(VerificationError):
        sslib_dsse.Envelope.from_dict(json.loads(edited)).verify([key], 1)
    with pytest.raises(SignatureVerificationError):
        Metadata.from_dict(json.loads(edited)).verify_signature(
            {"keyid": key.keyid, **key.to_dict()}
        )


def test_we_verify_an_envelope_securesystemslib_signed(release_signer: Pkcs11Signer) -> None:
    statement = render_statement(sample_provenance())
    theirs = sslib_dsse.Envelope(payload=statement, payload_type=PAYLOAD_TYPE, signatures={})
    theirs.sign(release_signer)
    data = json.dumps(theirs.to_dict()).encode()
    key = release_signer.public_key
    assert our_verify(parse_envelope(data, max_bytes=1 << 20), keys={key.keyid: key}) == (
        key.keyid,
    )


def _openssl_verifies(tmp_path: Path, signer: Pkcs11Signer, data: bytes) -> bool:
    env = parse_envelope(data, max_bytes=1 << 20)
    public = signer.public_key.keyval["public"]
    (tmp_path / "key.pem").write_text(public)
    (tmp_path / "pae.bin").write_bytes(pae(env.payload_type, env.payload))
    (tmp_path / "sig.der").write_bytes(env.signatures[0].sig)
    done = subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", "key.pem", "-signature", "sig.der", "pae.bin"],
        cwd=tmp_path,
        capture_output=True,
        timeout=30,
        check=False,
    )
    return done.returncode == 0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssl_verifies_the_signature_over_the_pae(
    tmp_path: Path, release_signer: Pkcs11Signer
) -> None:
    data = _signed(release_signer)
    assert serialization.load_pem_public_key(release_signer.public_key.keyval["public"].encode())
    assert _openssl_verifies(tmp_path, release_signer, data)
    assert not _openssl_verifies(tmp_path, release_signer, _edited(data))


def test_release_chain_with_the_token_key(release_signer: Pkcs11Signer) -> None:
    release = release_files(release_signer)
    key = release_signer.public_key
    verdict = verify_release_chain(
        model="m",
        version="1.0.0",
        targets=release.targets,
        files=release.files,
        release_keys={key.keyid: key},
        limits=LIMITS,
    )
    assert verdict.ok and verdict.signed_by == (key.keyid,)


def test_cyclonedx_python_lib_reads_our_image_sbom() -> None:
    components = [
        Component(name=f"c{i}", version="1", purl=f"pkg:generic/c{i}@1", sha256="d" * 64)
        for i in range(5)
    ]
    data = cyclonedx_for_image(
        model="gw",
        version="2.0.0",
        image_sha256=hashlib.sha256(b"i").hexdigest(),
        image_length=1,
        components=components,
        timestamp=sample_provenance().started_on,
        product_version="0.17.0",
    )
    doc: dict[str, Any] = json.loads(data)
    bom = Bom.from_json(doc)  # type: ignore[attr-defined]  # added by serializable
    assert len(bom.components) == check_sbom(data, max_bytes=1 << 20, max_components=10).components
    assert str(bom.serial_number) == doc["serialNumber"].removeprefix("urn:uuid:")
    assert bom.metadata.component is not None and bom.metadata.component.name == "gw"
