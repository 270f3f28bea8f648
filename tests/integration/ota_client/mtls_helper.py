"""Child-process side of the mTLS fetcher tests (run as ``python mtls_helper.py CMD JSON``).

``setup``: a SoftHSM2 token ``tf-device`` with the device key ``identity`` and a test CA key
``test-ca`` generated inside it (python-pkcs11); the CA signs the device certificate and a
loopback server certificate. The test server's key is a software key written 0600 in the test
directory: it belongs to the simulated repository server (Python ``ssl`` needs a key file),
not to the device.

``run``: the device side, in a process where only awscrt uses the token (python-pkcs11 and
awscrt must not be logged in to one token in one process): builds ``MtlsFetcher`` from a
``token_tls_context`` and runs the listed operations, printing one JSON result per operation.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SO_PIN = "so-PIN-mtls-tests-0001"
USER_PIN = "user-PIN-mtls-tests-0001"
TOKEN = "tf-device"


def setup(work: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from trustfleet.keystore import find_module, init_token, open_token, write_softhsm_conf

    conf = write_softhsm_conf(work / "softhsm2.conf", token_dir=work / "tokens")
    module = find_module()
    init_token(module=module, conf=conf, label=TOKEN, so_pin=SO_PIN, user_pin=USER_PIN)
    now = datetime.now(UTC)

    def cert(subject: str, public_key: Any, *, ca: bool, eku: Any, san: str | None) -> Any:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tf test CA")]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if eku is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        if san is not None:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False
            )
        return builder

    with open_token(module=module, label=TOKEN, pin=USER_PIN, conf=conf) as token:
        ca_key = token.generate_ec_key("test-ca")
        device_key = token.generate_ec_key("identity")
        ca_cert = cert("tf test CA", ca_key.public_key(), ca=True, eku=None, san=None).sign(
            ca_key, hashes.SHA256()
        )
        device = cert(
            "device-1", device_key.public_key(), ca=False,
            eku=ExtendedKeyUsageOID.CLIENT_AUTH, san=None,
        ).sign(ca_key, hashes.SHA256())  # fmt: skip
        server_key = ec.generate_private_key(ec.SECP256R1())
        server = cert(
            "localhost", server_key.public_key(), ca=False,
            eku=ExtendedKeyUsageOID.SERVER_AUTH, san="localhost",
        ).sign(ca_key, hashes.SHA256())  # fmt: skip
    pem = serialization.Encoding.PEM
    (work / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    (work / "device.pem").write_bytes(device.public_bytes(pem))
    (work / "server.pem").write_bytes(server.public_bytes(pem))
    key_file = work / "server.key"
    key_file.touch(mode=0o600)
    key_file.write_bytes(
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    print(json.dumps({"module": str(module), "conf": str(conf)}))


def _fetcher(args: dict[str, Any], work: Path) -> Any:
    from trustfleet.agent.updater.fetcher import FetchLimits, MtlsFetcher
    from trustfleet.keystore import token_tls_context

    tls = token_tls_context(
        module=Path(args["module"]), conf=Path(args["conf"]), token=TOKEN, key_label="identity",
        pin=USER_PIN, cert=work / "device.pem", trust=work / "ca.pem",
    )  # fmt: skip
    return MtlsFetcher(tls=tls, limits=FetchLimits(**args.get("limits", {})))


def _outcome(exc: BaseException) -> dict[str, Any]:
    return {"error": exc.__class__.__name__, "code": getattr(exc, "code", None)}


def _op(op: dict[str, Any], fetcher: Any, args: dict[str, Any], work: Path) -> dict[str, Any]:
    from trustfleet.agent.updater._download import Expected, download_resumable
    from trustfleet.agent.updater.tufclient import TufClient, init_trusted_root

    kind = op["op"]
    if kind == "fetch":
        body = fetcher.fetch_from(op["url"], op["start"])
        data = b"".join(body)
        digest = hashlib.sha256(data).hexdigest()
        return {"start": body.start, "length": len(data), "sha256": digest}
    if kind == "download":
        expected = Expected(op["name"], op["length"], op["sha256"], {})
        path = download_resumable(
            fetcher, url=op["url"], expected=expected, directory=work / op["dir"], attempts=3
        )
        return {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    if kind == "tuf":
        init_trusted_root(work / "tuf-md", bytes.fromhex(op["root"]))
        client = TufClient(
            metadata_dir=work / "tuf-md", metadata_url=op["base"] + "/metadata",
            targets_url=op["base"] + "/targets", download_dir=work / "tuf-dl", fetcher=fetcher,
        )  # fmt: skip
        client.refresh()
        target = client.target(op["target"])
        assert target is not None
        return {"sha256": hashlib.sha256(client.download(target).read_bytes()).hexdigest()}
    if kind == "two_contexts":
        return _two_contexts(op, fetcher, args, work)
    raise ValueError(kind)


def _two_contexts(
    op: dict[str, Any], first: Any, args: dict[str, Any], work: Path
) -> dict[str, Any]:
    """A second awscrt context on the same token (as the MQTT link holds one), used at once."""
    second = _fetcher(args, work)
    digests: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    def run(fetcher: Any) -> None:
        for _ in range(op["rounds"]):
            try:
                data = b"".join(fetcher.fetch_from(op["url"], 0))
            except Exception as exc:
                with lock:
                    errors.append(repr(exc))
                continue
            with lock:
                digests.append(hashlib.sha256(data).hexdigest())

    threads = [threading.Thread(target=run, args=(f,)) for f in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return {"digests": sorted(set(digests)), "count": len(digests), "errors": errors}


def run(args: dict[str, Any]) -> None:
    work = Path(args["work"])
    fetcher = _fetcher(args, work)
    for op in args["ops"]:
        try:
            result = _op(op, fetcher, args, work)
        except Exception as exc:  # reported to the test, which asserts on it
            result = _outcome(exc)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    command, payload = sys.argv[1], json.loads(sys.argv[2])
    if command == "setup":
        setup(Path(payload["work"]))
    else:
        run(payload)
