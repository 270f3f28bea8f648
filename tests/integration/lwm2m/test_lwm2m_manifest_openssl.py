"""The manifest signature checked by an independent verifier: ``openssl dgst -verify``."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from trustfleet.lwm2m.manifest import Manifest, sign_manifest


def test_openssl_verifies_the_sig_structure(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    manifest = Manifest(
        model="thermo-a1",
        version="2.0.0",
        sequence=1,
        image_path="/fw/thermo-a1/2.0.0/image",
        image_size=10,
        image_sha256=hashlib.sha256(b"0123456789").hexdigest(),
    )
    data = sign_manifest(
        manifest,
        sign=lambda tbs: key.sign(tbs, ec.ECDSA(hashes.SHA384())),
        algorithm="ES384",
        key_id=b"k",
    )
    protected, _, payload, raw = cbor2.loads(data).value
    # Rebuild the Sig_structure with another CBOR library, and the DER signature from r || s.
    (tmp_path / "tbs").write_bytes(cbor2.dumps(["Signature1", protected, b"", payload]))
    der = encode_dss_signature(int.from_bytes(raw[:48], "big"), int.from_bytes(raw[48:], "big"))
    (tmp_path / "sig").write_bytes(der)
    (tmp_path / "pub.pem").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    args = ["openssl", "dgst", "-sha384", "-verify", "pub.pem", "-signature", "sig", "tbs"]
    good = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert good.returncode == 0, good.stderr
    assert "Verified OK" in good.stdout
    (tmp_path / "tbs").write_bytes(cbor2.dumps(["Signature1", protected, b"x", payload]))
    bad = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert bad.returncode != 0
