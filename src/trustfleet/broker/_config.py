"""What the broker is: its settings, its files in the server home, and the rendered texts.

Pure: the rendering functions return text; :mod:`trustfleet.broker._files` writes it and
:mod:`trustfleet.broker._binaries` finds Mosquitto and builds the guard plugin.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from trustfleet.broker._checks import (
    check_conf_path,
    check_host,
    check_limits,
    check_run_as,
    check_service_identity,
)
from trustfleet.broker._names import (
    ADMIN_USERNAME,
    CONTROL_TOPIC_FILTER,
    DEVICE_TOPIC_ROOT,
    UNPRIVILEGED_USER,
)
from trustfleet.errors import Config
from trustfleet.wire import BROKER_STATS_TOPIC, MAX_BROKER_STATS_BYTES

__all__ = [
    "ADMIN_USERNAME",
    "CONTROL_TOPIC_FILTER",
    "DEVICE_TOPIC_ROOT",
    "UNPRIVILEGED_USER",
    "BrokerConfig",
    "BrokerPaths",
    "render_acl",
    "render_mosquitto_conf",
]

_PACKET_OVERHEAD_BYTES = 8 * 1024  # fixed header, topic (a device's is < 100 bytes), properties
_UNIX_PATH_MAX_BYTES = 107  # sun_path is 108 bytes with the terminating NUL


@dataclass(frozen=True)
class BrokerPaths:
    """Where the broker's files live in a server home (all under ``HOME/broker`` but four).

    ``HOME/broker`` (0750, group of the broker's user) holds what Mosquitto reads, written by
    the service; ``HOME/broker/run`` (0700, the broker's user) what Mosquitto itself writes:
    the dynamic-security state and the admin socket. Mosquitto reaches both through a
    directory descriptor (``/proc/self/fd/N``), never through the home's own path.
    """

    home: Path
    tls_cert: Path
    tls_key: Path

    @property
    def directory(self) -> Path:
        return self.home / "broker"

    @property
    def run_dir(self) -> Path:
        return self.directory / "run"

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
    def capath(self) -> Path:
        """Device CAs trusted since the listener started (broker/_trust.py)."""
        return self.directory / "trust.d"

    @property
    def crlfile(self) -> Path:
        return self.directory / "device-ca.crl.pem"

    @property
    def certfile(self) -> Path:
        """The broker's chain as Mosquitto reads it (a copy of ``tls_cert``)."""
        return self.directory / "broker-chain.pem"

    @property
    def keyfile(self) -> Path:
        """The broker's key as Mosquitto reads it (a copy of ``tls_key``, never world-readable)."""
        return self.directory / "broker.key"

    @property
    def dynsec_state(self) -> Path:
        return self.run_dir / "dynamic-security.json"

    @property
    def log(self) -> Path:
        return self.directory / "mosquitto.log"

    @property
    def admin_socket(self) -> Path:
        return self.run_dir / "admin.sock"

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
            topics, write every device's ``cmd``). Each has a character outside the
            device-id alphabet, so no client id ``<identity>-<suffix>`` is a device id.
        mosquitto: The ``mosquitto`` executable (found on PATH or in /usr/sbin if None).
        dynsec_plugin: The dynamic-security plugin (found in the multiarch libdir if None).
        run_as: The OS user Mosquitto runs as; never root (docs/adr/0011-broker-guard.md).
        device_max_payload_bytes: Largest PUBLISH payload a device may send.
        device_rate_per_s: Sustained PUBLISH rate of one device (token bucket).
        device_burst: Messages a device may send at once above its rate.
        device_max_inflight: QoS 1/2 messages a client may have in flight towards the broker
            (Mosquitto's ``max_inflight_messages``, announced as its receive maximum).
        max_packet_bytes: Largest MQTT packet any client may send (None: the device payload
            plus room for the topic and properties).
        max_queued_messages: QoS 1 messages Mosquitto queues per client beyond those in
            flight (its default, 1000, drops acknowledged telemetry on the way to a busy
            ingest connection).
        max_open_files: File-descriptor limit asked for the broker (one per connection);
            capped by the hard limit of the process that starts it.
        start_timeout_s: How long ``start`` waits for the listener.
        stop_timeout_s: How long ``stop`` waits after SIGTERM before SIGKILL.
        control_timeout_s: Bound on each step of a dynamic-security exchange.
        reload_timeout_s: How long ``reload_crl`` waits for Mosquitto to confirm the reload.
        compile_timeout_s: Bound on building the guard plugin with the C compiler.
        stats_interval_s: How often the guard publishes each device's counters on
            ``tf/v1/s/broker/stats`` (the ``[monitoring] service_window_s``; 0: never).
        stats_max_devices: Devices the guard counts at once (the least active are not).
        stats_max_bytes: Largest statistics chunk the guard publishes.
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
    run_as: str = UNPRIVILEGED_USER
    device_max_payload_bytes: int = 16 * 1024
    device_rate_per_s: float = 20.0
    device_burst: int = 100
    device_max_inflight: int = 20
    max_packet_bytes: int | None = None
    max_queued_messages: int = 100_000
    max_open_files: int = 65_536
    start_timeout_s: float = 10.0
    stop_timeout_s: float = 5.0
    control_timeout_s: float = 5.0
    reload_timeout_s: float = 5.0
    compile_timeout_s: float = 60.0
    stats_interval_s: int = 60
    stats_max_devices: int = 100_000
    stats_max_bytes: int = MAX_BROKER_STATS_BYTES
    max_restarts: int = 5
    restart_backoff_s: float = 0.2
    max_backoff_s: float = 10.0
    stable_after_s: float = 30.0
    poll_interval_s: float = 0.2

    def __post_init__(self) -> None:
        check_host(self.host)
        if not 1 <= self.port <= 65535:
            raise Config(f"The broker port {self.port} is out of range.", code="broker.port")
        for name in self.service_identities:
            check_service_identity(name)
        check_run_as(self.run_as)
        check_limits(self)
        for path in (self.paths.home, self.paths.tls_cert, self.paths.tls_key):
            check_conf_path(path)
        if len(str(self.paths.admin_socket).encode()) > _UNIX_PATH_MAX_BYTES:
            raise Config(
                "The broker's admin socket path is too long for a unix socket.",
                hint="Use a server home with a shorter path.",
                code="broker.socket_path",
            )

    @property
    def packet_limit_bytes(self) -> int:
        """Mosquitto's ``max_packet_size``."""
        if self.max_packet_bytes is not None:
            return self.max_packet_bytes
        return self.device_max_payload_bytes + _PACKET_OVERHEAD_BYTES

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
        device_max_payload_bytes: int = 16 * 1024,
        device_rate_per_s: float = 20.0,
        device_burst: int = 100,
        stats_interval_s: int = 60,
    ) -> BrokerConfig:
        """A configuration for a server home made by ``trustfleet server init``.

        Args:
            home: The server home (absolute after resolving).
            port: The device listener's port.
            host: The address the device listener binds to.
            service_identities: Certificate CNs of fleet-service clients.
            tls_cert: The broker chain, relative to the home or absolute.
            tls_key: The broker key, relative to the home or absolute.
            run_as: The OS user Mosquitto runs as; if None, ``mosquitto`` when the service
                runs as root, else the service's own user.
            device_max_payload_bytes: Largest payload a device may publish.
            device_rate_per_s: A device's sustained publish rate.
            device_burst: Publications a device may send at once above its rate.
            stats_interval_s: How often the guard publishes per-device counters (0: never).

        Returns:
            The configuration.

        Raises:
            Config: A value cannot be used safely in a Mosquitto configuration.
        """
        home = home.resolve()
        paths = BrokerPaths(home=home, tls_cert=home / tls_cert, tls_key=home / tls_key)
        if run_as is None:
            euid = os.geteuid()
            run_as = UNPRIVILEGED_USER if euid == 0 else pwd.getpwuid(euid).pw_name
        return cls(
            paths=paths,
            host=host,
            port=port,
            service_identities=tuple(service_identities),
            run_as=run_as,
            device_max_payload_bytes=device_max_payload_bytes,
            device_rate_per_s=device_rate_per_s,
            device_burst=device_burst,
            stats_interval_s=stats_interval_s,
        )


def render_mosquitto_conf(config: BrokerConfig, *, view: Path, guard: Path, dynsec: Path) -> str:
    """The text of ``mosquitto.conf``: one mTLS listener, one admin unix socket, two plugins.

    Args:
        config: The broker configuration.
        view: ``HOME/broker`` as Mosquitto reaches it (``/proc/self/fd/N``).
        guard: The guard plugin's file name inside ``HOME/broker``.
        dynsec: The dynamic-security plugin (a system path).

    The guard comes first: its callbacks run before dynamic security's, and before the ACL
    file's (registered last by Mosquitto). Every value is checked by :class:`BrokerConfig`.
    """
    p = config.paths
    run = view / p.run_dir.name

    def at(path: Path) -> str:
        return str(view / path.relative_to(p.directory))

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
            "retain_available false",
            f"max_packet_size {config.packet_limit_bytes}",
            f"max_inflight_messages {config.device_max_inflight}",
            f"max_queued_messages {config.max_queued_messages}",
            f"acl_file {at(p.acl)}",
            f"plugin {view / guard.name}",
            f"plugin_opt_services {' '.join(config.service_identities)}".rstrip(),
            f"plugin_opt_device_max_payload {config.device_max_payload_bytes}",
            f"plugin_opt_device_rate_per_s {config.device_rate_per_s!r}",
            f"plugin_opt_device_burst {config.device_burst}",
            f"plugin_opt_stats_interval_s {config.stats_interval_s}",
            f"plugin_opt_stats_max_devices {config.stats_max_devices}",
            f"plugin_opt_stats_max_bytes {config.stats_max_bytes}",
            f"plugin {dynsec}",
            f"plugin_opt_config_file {run / p.dynsec_state.name}",
            "",
            "# Devices and fleet services: mutual TLS 1.3; the guard plugin ties the MQTT",
            "# username and client id to the certificate CN.",
            f"listener {config.port} {config.host}",
            "protocol mqtt",
            f"certfile {at(p.certfile)}",
            f"keyfile {at(p.keyfile)}",
            f"cafile {at(p.cafile)}",
            f"capath {at(p.capath)}",
            f"crlfile {at(p.crlfile)}",
            "tls_version tlsv1.3",
            "require_certificate true",
            "",
            "# Administration (dynamic security) only, on a socket in a 0700 directory.",
            f"listener 0 {run / p.admin_socket.name}",
            "protocol mqtt",
            "",
        ]
    )


def render_acl(config: BrokerConfig) -> str:
    """The text of the ACL file: services, the admin, then one pattern for every device.

    The guard plugin has already refused what a device may not do (other namespaces,
    ``$share``, wildcards above its level, retained, oversize, over the rate).
    """
    lines = ["# Written by TrustFleet at every broker start; edits are lost."]
    for name in config.service_identities:
        lines += [
            f"user {name}",
            f"topic read {DEVICE_TOPIC_ROOT}/+/#",
            f"topic read {BROKER_STATS_TOPIC}",
            f"topic write {DEVICE_TOPIC_ROOT}/+/cmd",
            f"topic write {DEVICE_TOPIC_ROOT}/+/ota/cmd",
            f"topic write {DEVICE_TOPIC_ROOT}/+/attest/challenge",
            "",
        ]
    lines += [f"user {ADMIN_USERNAME}", f"topic readwrite {CONTROL_TOPIC_FILTER}", ""]
    lines += [f"pattern readwrite {DEVICE_TOPIC_ROOT}/%u/#", ""]
    return "\n".join(lines)
