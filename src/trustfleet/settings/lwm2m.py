"""The ``[lwm2m]`` section of ``trustfleet.toml``: the LwM2M 1.1 server for constrained devices
over CoAP and DTLS 1.2 (docs/lwm2m.md).

Each field's ``description`` is the comment written above it in the file.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from trustfleet.configfile import ConfigModel

__all__ = ["Lwm2mSettings"]


class Lwm2mSettings(ConfigModel):
    """The LwM2M server ('lwm2m#0' of 'trustfleet server run'): bootstrap and device management
    of constrained devices over CoAP secured by DTLS 1.2, on the device CA and its CRL (certificate
    mode) or per-device pre-shared keys (PSK mode). docs/lwm2m.md."""

    enabled: bool = False
    """Start the LwM2M server with 'server run'."""
    host: str = "127.0.0.1"
    """The UDP address the DTLS endpoint binds (bootstrap and device management share it)."""
    port: int = Field(default=5684, ge=0, le=65535)
    """Its UDP port (5684 is coaps; 0: any free port, for tests)."""
    public_host: str = ""
    """The host name devices use in coaps:// URIs (bootstrap writes, firmware Package URIs);
    empty: host."""
    tls_cert: str = "tls/broker-chain.pem"
    """The server's certificate chain in certificate mode (an ECDSA key: the ECDHE-ECDSA suites);
    by default the broker's, which devices already trust."""
    tls_key: str = "secrets/broker-tls.key"
    """Its key file (0600), like the broker's and the API's: the one kind of key on disk."""
    modes: list[Literal["psk", "cert"]] = Field(default=["psk", "cert"], min_length=1)
    """Security modes accepted: "psk" (per-device pre-shared keys) and "cert" (LDevIDs from the
    device CA, CRL checked at each handshake)."""
    ciphers: list[str] = Field(
        default=[
            "ECDHE-ECDSA-AES128-CCM8",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            "PSK-AES128-CCM8",
            "PSK-AES128-GCM-SHA256",
        ],
        min_length=1,
        max_length=32,
    )
    """OpenSSL names of the DTLS 1.2 cipher suites, in order of preference (the LwM2M mandatory
    suites TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 and TLS_PSK_WITH_AES_128_CCM_8 first)."""
    psk_bytes: int = Field(default=16, ge=16, le=64)
    """Length of each generated pre-shared key."""
    max_peers: int = Field(default=10_000, ge=1, le=1_000_000)
    """DTLS sessions held at once; a new peer beyond it is dropped (the oldest idle first)."""
    max_handshakes: int = Field(default=256, ge=1, le=100_000)
    """Handshakes in flight (after the cookie exchange) at once; more are dropped."""
    handshake_timeout_s: float = Field(default=30.0, gt=0, le=600)
    """A handshake not finished within this is abandoned."""
    idle_timeout_s: float = Field(default=600.0, gt=0, le=86_400)
    """A session with no record for this long is dropped (devices re-handshake)."""
    max_datagram_bytes: int = Field(default=1500, ge=256, le=65_507)
    """Larger UDP datagrams are dropped unread."""
    max_peer_buffer_bytes: int = Field(default=16 * 1024, ge=1024, le=1 << 20)
    """Bytes buffered per peer (pending records, reassembly) before it is dropped."""
    cookie_secret_ttl_s: float = Field(default=300.0, gt=0, le=86_400)
    """The stateless cookie secret (HMAC) is replaced this often; the previous one still checks."""
    min_lifetime_s: int = Field(default=30, ge=1, le=86_400)
    """Registrations asking for a shorter lifetime get this one."""
    max_lifetime_s: int = Field(default=86_400, ge=60, le=31 * 86_400)
    """Registrations asking for a longer lifetime get this one."""
    default_lifetime_s: int = Field(default=300, ge=1, le=31 * 86_400)
    """The lifetime a registration without 'lt' gets (LwM2M: 86400; shorter here so that a
    silent device is noticed), and what bootstrap writes into Server object 1."""
    max_registrations: int = Field(default=100_000, ge=1, le=10_000_000)
    """Registrations held at once; more are refused (CoAP 5.03)."""
    max_object_links: int = Field(default=256, ge=1, le=65_535)
    """Object links a registration may list."""
    max_payload_bytes: int = Field(default=64 * 1024, ge=256, le=16 << 20)
    """The largest CoAP payload assembled from blocks (Block1 requests, Block2 responses)."""
    block_size: Literal[16, 32, 64, 128, 256, 512, 1024] = 512
    """Block size (RFC 7959) the server uses for firmware packages and large responses."""
    exchange_lifetime_s: float = Field(default=247.0, gt=0, le=3600)
    """How long a message id is remembered to answer a duplicate (RFC 7252 EXCHANGE_LIFETIME)."""
    ack_timeout_s: float = Field(default=2.0, gt=0, le=60)
    """A confirmable request to a device is retransmitted after this (doubling, RFC 7252)."""
    max_retransmit: int = Field(default=4, ge=0, le=16)
    """Retransmissions of a confirmable request before the device counts as unreachable."""
    observe: list[str] = Field(default=["/3303"], max_length=64)
    """Object paths the server observes on every registered device that lists them (notifies go
    into the telemetry store, like MQTT telemetry)."""
    max_notifications_per_s: float = Field(default=10.0, gt=0, le=10_000)
    """Per device; notifications above the rate are dropped and counted."""
    firmware_check_s: float = Field(default=5.0, gt=0, le=3600)
    """How often the server looks for firmware jobs of registered devices (campaign waves)."""
    revocation_poll_s: float = Field(default=0.5, gt=0, le=60)
    """How often the server checks the store for revoked or decommissioned devices and quarantines,
    closing their sessions."""
