"""What the broker is: its settings, its files in the server home, and the rendered texts.

Pure apart from :func:`find_mosquitto` and :func:`find_dynsec_plugin`, which look at the
filesystem. The rendering functions return text; :mod:`trustfleet.broker._files` writes it.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import pwd
import re
import secrets
import shutil
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from trustfleet.errors import Config
from trustfleet.pki import DEVICE_ID_PATTERN

__all__ = [
    "ADMIN_USERNAME",
    "DEVICE_TOPIC_ROOT",
    "BrokerConfig",
    "BrokerPaths",
    "find_dynsec_plugin",
    "find_mosquitto",
    "quarantine_commands",
    "release_commands",
    "render_acl",
    "render_dynsec_state",
    "render_mosquitto_conf",
]

DEVICE_TOPIC_ROOT = "tf/v1/d"
"""Every device owns ``tf/v1/d/<device-id>/#`` and nothing else."""

ADMIN_USERNAME = "tf_broker_admin"
"""The dynamic-security admin. The ``_`` keeps it outside the device-id alphabet."""

_ADMIN_ROLE = "tf-control"
_CONTROL_TOPIC = "$CONTROL/dynamic-security/#"
_PBKDF2_ITERATIONS = 1000  # the password is 256 random bits; iterations add little
_SALT_BYTES = 12  # SALT_LEN in mosquitto 2.0 (src/password_mosq.h)
_SERVICE_IDENTITY = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_UNIX_PATH_MAX_BYTES = 107  # sun_path is 108 bytes with the terminating NUL
_MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
_PLUGIN_NAME = "mosquitto_dynamic_security.so"


@dataclass(frozen=True)
class BrokerPaths:
    """Where the broker's files live in a server home (all under ``HOME/broker`` but two)."""

    home: Path
    tls_cert: Path
    tls_key: Path

    @property
    def directory(self) -> Path:
        return self.home / "broker"

    @property
    def conf(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def acl(self) -> Path:
        return self.directory / "acl"

    @property
    def cafile(self) -> Path:
        return self.directory / "device-trust.pem"

    @property
    def crlfile(self) -> Path:
        return self.directory / "device-ca.crl.pem"

    @property
    def dynsec_state(self) -> Path:
        return self.directory / "dynamic-security.json"

    @property
    def log(self) -> Path:
        return self.directory / "mosquitto.log"

    @property
    def admin_socket(self) -> Path:
        return self.directory / "admin.sock"

    @property
    def admin_secret(self) -> Path:
        return self.home / "secrets" / "broker-admin.json"

    @property
    def device_ca(self) -> Path:
        return self.home / "public" / "device-ca.pem"

    @property
    def root_ca(self) -> Path:
        return self.home / "public" / "root-ca.pem"


@dataclass(frozen=True)
class BrokerConfig:
    """How the broker runs. Bounds are named fields with safe defaults.

    Attributes:
        paths: The files in the server home.
        host: The IP address the device listener binds to.
        port: The device listener's TCP port.
        service_identities: Certificate CNs of fleet-service clients (read all device
            topics, write every device's ``cmd``). Never of the device-id form.
        mosquitto: The ``mosquitto`` executable (found on PATH or in /usr/sbin if None).
        dynsec_plugin: The dynamic-security plugin (found in the multiarch libdir if None).
        run_as: The OS user Mosquitto runs as (see docs/adr/0003-broker.md).
        max_packet_bytes: Largest MQTT packet a client may send.
        max_queued_messages: QoS 1 messages Mosquitto queues per client beyond those in
            flight (its default, 1000, drops acknowledged telemetry on the way to a busy
            ingest connection).
        max_open_files: File-descriptor limit asked for the broker (one per connection);
            capped by the hard limit of the process that starts it.
        start_timeout_s: How long ``start`` waits for the listener.
        stop_timeout_s: How long ``stop`` waits after SIGTERM before SIGKILL.
        control_timeout_s: Bound on each step of a dynamic-security exchange.
        reload_timeout_s: How long ``reload_crl`` waits for Mosquitto to confirm the reload.
        max_restarts: Consecutive restarts before the supervisor gives up.
        restart_backoff_s: First restart delay; doubles per consecutive restart.
        max_backoff_s: Ceiling of the restart delay.
        stable_after_s: A run this long resets the consecutive-restart count.
        poll_interval_s: How often the monitor thread checks the child.
    """

    paths: BrokerPaths
    host: str
    port: int
    service_identities: tuple[str, ...] = ()
    mosquitto: Path | None = None
    dynsec_plugin: Path | None = None
    run_as: str = "mosquitto"
    max_packet_bytes: int = 256 * 1024
    max_queued_messages: int = 100_000
    max_open_files: int = 65_536
    start_timeout_s: float = 10.0
    stop_timeout_s: float = 5.0
    control_timeout_s: float = 5.0
    reload_timeout_s: float = 5.0
    max_restarts: int = 5
    restart_backoff_s: float = 0.2
    max_backoff_s: float = 10.0
    stable_after_s: float = 30.0
    poll_interval_s: float = 0.2

    def __post_init__(self) -> None:
        _check_host(self.host)
        if not 1 <= self.port <= 65535:
            raise Config(f"The broker port {self.port} is out of range.", code="broker.port")
        for name in self.service_identities:
            _check_service_identity(name)
        if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", self.run_as):
            raise Config("The broker's run_as user name is malformed.", code="broker.user")
        for path in (self.paths.home, self.paths.tls_cert, self.paths.tls_key):
            _check_conf_path(path)
        if len(str(self.paths.admin_socket).encode()) > _UNIX_PATH_MAX_BYTES:
            raise Config(
                "The broker's admin socket path is too long for a unix socket.",
                hint="Use a server home with a shorter path.",
                code="broker.socket_path",
            )

    @classmethod
    def for_home(
        cls,
        home: Path,
        *,
        port: int,
        host: str = "127.0.0.1",
        service_identities: Sequence[str] = (),
        tls_cert: str = "tls/broker-chain.pem",
        tls_key: str = "secrets/broker-tls.key",
        run_as: str | None = None,
    ) -> BrokerConfig:
        """A configuration for a server home made by ``trustfleet server init``.

        Args:
            home: The server home (absolute after resolving).
            port: The device listener's port.
            host: The address the device listener binds to.
            service_identities: Certificate CNs of fleet-service clients.
            tls_cert: The broker chain, relative to the home or absolute.
            tls_key: The broker key, relative to the home or absolute.
            run_as: The OS user Mosquitto runs as; the current user if None.

        Returns:
            The configuration.

        Raises:
            Config: A value cannot be used safely in a Mosquitto configuration.
        """
        home = home.resolve()
        paths = BrokerPaths(home=home, tls_cert=home / tls_cert, tls_key=home / tls_key)
        return cls(
            paths=paths,
            host=host,
            port=port,
            service_identities=tuple(service_identities),
            run_as=run_as or pwd.getpwuid(os.geteuid()).pw_name,
        )


def _check_host(host: str) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError as exc:
        raise Config(
            f"The broker host {host!r} is not an IP address.",
            hint="Give the address to bind, such as 127.0.0.1.",
            code="broker.host",
        ) from exc


def _check_service_identity(name: str) -> None:
    if not _SERVICE_IDENTITY.fullmatch(name) or DEVICE_ID_PATTERN.fullmatch(name):
        raise Config(
            f"The broker service identity {name!r} is not allowed.",
            hint="Use 1-64 characters of [A-Za-z0-9._:-] that cannot be a device id, "
            "e.g. with a '.' such as 'svc.ingest'.",
            code="broker.service_identity",
        )
    if name == ADMIN_USERNAME:
        raise Config("A service identity cannot be the broker admin.", code="broker.identity")


def _check_conf_path(path: Path) -> None:
    if any(c.isspace() for c in str(path)) or "#" in str(path):
        raise Config(
            f"The path {path} contains whitespace or '#', which mosquitto.conf cannot hold.",
            hint="Move the server home to a path without spaces.",
            code="broker.path",
        )


def find_mosquitto(configured: Path | None) -> Path:
    """The ``mosquitto`` executable.

    Raises:
        Config: It is not installed.
    """
    if configured is not None:
        candidates: list[str] = [str(configured)]
    else:
        found = shutil.which("mosquitto")
        candidates = ([found] if found else []) + list(_MOSQUITTO_CANDIDATES)
    for candidate in candidates:
        if Path(candidate).is_file():
            return Path(candidate)
    raise Config(
        "Mosquitto is not installed.",
        hint="Install it (Debian: apt-get install mosquitto mosquitto-clients).",
        code="broker.mosquitto_missing",
    )


def find_dynsec_plugin(configured: Path | None) -> Path:
    """The dynamic-security plugin shared object.

    Raises:
        Config: It cannot be found.
    """
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    candidates = (
        [configured]
        if configured is not None
        else [
            Path("/usr/lib") / multiarch / _PLUGIN_NAME,
            Path("/usr/lib") / _PLUGIN_NAME,
            Path("/usr/local/lib") / _PLUGIN_NAME,
        ]
    )
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise Config(
        "The Mosquitto dynamic security plugin was not found.",
        hint="Install Mosquitto 2.0 or later, which ships mosquitto_dynamic_security.so.",
        code="broker.plugin_missing",
    )


def render_mosquitto_conf(config: BrokerConfig, *, plugin: Path) -> str:
    """The text of ``mosquitto.conf``: one mTLS device listener and one admin unix socket."""
    p = config.paths
    return "\n".join(
        [
            "# Written by TrustFleet at every broker start; edits are lost.",
            "per_listener_settings false",
            "allow_anonymous false",
            "persistence false",
            f"user {config.run_as}",
            "log_dest stderr",
            *(f"log_type {t}" for t in ("error", "warning", "notice", "information")),
            "log_timestamp true",
            "connection_messages true",
            f"max_packet_size {config.max_packet_bytes}",
            f"max_queued_messages {config.max_queued_messages}",
            f"acl_file {p.acl}",
            f"plugin {plugin}",
            f"plugin_opt_config_file {p.dynsec_state}",
            "",
            "# Devices and fleet services: mutual TLS 1.3, identity = certificate CN.",
            f"listener {config.port} {config.host}",
            "protocol mqtt",
            f"certfile {p.tls_cert}",
            f"keyfile {p.tls_key}",
            f"cafile {p.cafile}",
            f"crlfile {p.crlfile}",
            "tls_version tlsv1.3",
            "require_certificate true",
            "use_identity_as_username true",
            "",
            "# Administration (dynamic security) only, on a socket in a 0700 directory.",
            f"listener 0 {p.admin_socket}",
            "protocol mqtt",
            "",
        ]
    )


def render_acl(config: BrokerConfig) -> str:
    """The text of the ACL file: services, the admin, then one pattern for every device."""
    lines = ["# Written by TrustFleet at every broker start; edits are lost."]
    for name in config.service_identities:
        lines += [
            f"user {name}",
            f"topic read {DEVICE_TOPIC_ROOT}/+/#",
            f"topic write {DEVICE_TOPIC_ROOT}/+/cmd",
            f"topic write {DEVICE_TOPIC_ROOT}/+/ota/cmd",
            f"topic write {DEVICE_TOPIC_ROOT}/+/attest/challenge",
            "",
        ]
    lines += [f"user {ADMIN_USERNAME}", f"topic readwrite {_CONTROL_TOPIC}", ""]
    lines += [f"pattern readwrite {DEVICE_TOPIC_ROOT}/%u/#", ""]
    return "\n".join(lines)


QUARANTINE_LEAVES = ("ota", "attest")
"""What a quarantined device keeps: its ``ota/`` and ``attest/`` topics (an update can heal it)."""

_ALLOW_KINDS = ("publishClientSend", "publishClientReceive", "subscribePattern",
                "unsubscribePattern")  # fmt: skip
_DENY_KINDS = ("publishClientSend", "publishClientReceive", "subscribePattern")


def _quarantine_role(device_id: str) -> str:
    return f"tf-quarantine-{device_id}"


def quarantine_commands(device_id: str) -> list[dict[str, object]]:
    """Dynamic-security commands that confine a device to its ``ota/`` and ``attest/`` topics.

    The ACL file's pattern lets every device use ``tf/v1/d/<id>/#``; the plugin is asked
    first, and for a client it knows an explicit deny ends the check. So the device becomes a
    plugin client with a role of its own: allow its quarantine leaves (priority 10), deny
    everything else (priority 0). Its certificate login is unchanged (the CN is the username).
    """
    if not DEVICE_ID_PATTERN.fullmatch(device_id):
        raise Config(f"{device_id[:70]!r} is not a device id", code="broker.quarantine.id")
    acls: list[dict[str, object]] = [
        {
            "acltype": kind,
            "topic": f"{DEVICE_TOPIC_ROOT}/{device_id}/{leaf}/#",
            "allow": True,
            "priority": 10,
        }
        for leaf in QUARANTINE_LEAVES
        for kind in _ALLOW_KINDS
    ]
    acls += [{"acltype": kind, "topic": "#", "allow": False, "priority": 0} for kind in _DENY_KINDS]
    role = _quarantine_role(device_id)
    return [
        {"command": "createRole", "rolename": role, "acls": acls},
        {"command": "createClient", "username": device_id, "roles": [{"rolename": role}]},
    ]


def release_commands(device_id: str) -> list[dict[str, object]]:
    """Commands that end a quarantine (deleting the client also disconnects the device)."""
    if not DEVICE_ID_PATTERN.fullmatch(device_id):
        raise Config(f"{device_id[:70]!r} is not a device id", code="broker.quarantine.id")
    return [
        {"command": "deleteClient", "username": device_id},
        {"command": "deleteRole", "rolename": _quarantine_role(device_id)},
    ]


def render_dynsec_state(password: str) -> str:
    """The dynamic-security state: only the admin; every default access denied.

    With every default denied, a client the plugin does not know (every device and
    service) gets ``defer`` from the plugin and the ACL file decides.
    """
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _PBKDF2_ITERATIONS)
    acls = [
        {"acltype": kind, "topic": _CONTROL_TOPIC, "allow": True, "priority": 0}
        for kind in (
            "publishClientSend",
            "publishClientReceive",
            "subscribePattern",
            "unsubscribePattern",
        )
    ]
    state = {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": False,
        },
        "clients": [
            {
                "username": ADMIN_USERNAME,
                "textName": "TrustFleet broker administration",
                "password": base64.b64encode(digest).decode(),
                "salt": base64.b64encode(salt).decode(),
                "iterations": _PBKDF2_ITERATIONS,
                "roles": [{"rolename": _ADMIN_ROLE}],
            }
        ],
        "groups": [],
        "roles": [{"rolename": _ADMIN_ROLE, "acls": acls}],
    }
    return json.dumps(state, indent=2) + "\n"
