"""A throwaway RabbitMQ cluster for tests, started from Debian's rabbitmq-server on this host.

:func:`rabbitmq_cluster` starts N nodes as the current user, each under its own unique node
name (``tf<random><letter>@localhost``) with its data, logs and config files in a temporary
folder, and joins nodes 2..N to node 1 (``stop_app`` / ``join_cluster`` / ``start_app``).
Everything listens on free loopback ports: AMQP (plain, tests only), MQTT over TLS 1.3 with
client certificates, CRL checks and certificate login (the MQTT TCP listener is off), the
management HTTP API, each node's Erlang distribution port, and an epmd of the cluster's own on a
free port (``ERL_EPMD_PORT``) started here, so a system epmd on 4369 is never touched.
The nodes and the CLI share a private Erlang cookie (``HOME`` points at a folder holding
``.erlang.cookie``, mode 0400).

Nodes are stopped by ``rabbitmqctl stop`` with their node name, then by their process group
(they run in their own session); epmd by its process group. Never by process name.

Revocation: the TLS options name Erlang's ``ssl_crl_hash_dir`` CRL cache over a folder of CRLs
named ``<issuer hash>.r<N>`` (:func:`support.rabbitmq_pki.write_hashed_crl`). It reads the folder
at every handshake (``ssl_crl_hash_dir:select/2`` finds and reads the file each time), so a new
CRL file applies to the next handshake without any reload; ``ssl:clear_pem_cache()`` is not
needed for it (that cache holds the CA, certificate and key files, not these CRLs). What a new
CRL does not do is end a connection made before it: ``RabbitCluster.close_mqtt_connections``
does that.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import string
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pika

from trustfleet.errors import Unavailable
from trustfleet.sim.process import ManagedProcess, free_port, port_open, wait_until

__all__ = [
    "PEM_CACHE_CLEAN_MS",
    "Atom",
    "MqttConnection",
    "RabbitCluster",
    "RabbitCtlError",
    "RabbitNode",
    "RabbitUnavailable",
    "erlang_term",
    "rabbitmq_cluster",
]

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
"""Debian's RabbitMQ scripts (``/usr/sbin/rabbitmq*`` wrap them with ``su rabbitmq``)."""
NODE_START_TIMEOUT_S = 120.0
CTL_TIMEOUT_S = 90.0
MGMT_TIMEOUT_S = 30.0
CLUSTER_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
LOG_TAIL_CHARS = 4000
PEM_CACHE_CLEAN_MS = 5000
"""How often each node's ``ssl`` application re-checks the PEM files it cached (the CA bundle)
and drops those that changed (``ssl_pem_cache_clean``; OTP's default is 2 minutes)."""
PLUGINS = ("rabbitmq_mqtt", "rabbitmq_management")
MQTT_EXCHANGE = "amq.topic"
VHOST = "/"


class RabbitUnavailable(RuntimeError):
    """RabbitMQ cannot be run on this host (the message says why)."""


class RabbitCtlError(RuntimeError):
    """A ``rabbitmqctl`` command failed (the message holds its output)."""


class Atom(str):
    """An Erlang atom in :func:`erlang_term` (a plain ``str`` is an Erlang string)."""


def erlang_term(value: object) -> str:
    """Render ``value`` as an Erlang term: the model of ``advanced.config``.

    ``Atom`` -> atom, ``str``/``Path`` -> string, ``bool`` -> ``true``/``false``, ``int``,
    ``tuple`` -> tuple, ``list`` -> list.

    Raises:
        TypeError: A value of another type.
    """
    if isinstance(value, Atom):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # Erlang string escapes agree with JSON's for ASCII
    if isinstance(value, tuple):
        return "{" + ", ".join(erlang_term(v) for v in value) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(erlang_term(v) for v in value) + "]"
    raise TypeError(f"no Erlang term for {type(value).__name__}")


@dataclass(frozen=True)
class RabbitNode:
    """One node of a :class:`RabbitCluster` and its loopback ports."""

    name: str
    amqp_port: int
    mqtt_tls_port: int
    mgmt_port: int
    dist_port: int
    base: Path

    @property
    def log_file(self) -> Path:
        """The node's log file."""
        return self.base / "log" / "node.log"


@dataclass(frozen=True)
class MqttConnection:
    """An MQTT connection as ``rabbitmqctl list_mqtt_connections`` shows it."""

    user: str
    client_id: str
    name: str
    """Its ``conn_name``, e.g. ``127.0.0.1:50677 -> 127.0.0.1:51947``."""
    node: str


@dataclass(frozen=True)
class _Paths:
    """Files shared by the nodes of one cluster."""

    root: Path
    home: Path
    server_cert: Path
    server_key: Path
    ca_bundle: Path
    crl_dir: Path


class RabbitCluster:
    """A running cluster. Use :func:`rabbitmq_cluster` to get one.

    Args:
        paths: The cluster's shared files.
        nodes: Its nodes, node 1 first.
        epmd_port: The port of the cluster's own epmd.
        admin_user: The administrator the nodes were booted with (AMQP, management).
        admin_password: Its password.
    """

    def __init__(
        self,
        paths: _Paths,
        *,
        nodes: Sequence[RabbitNode],
        epmd_port: int,
        admin_user: str,
        admin_password: str,
    ) -> None:
        self._paths = paths
        self.nodes = tuple(nodes)
        self.epmd_port = epmd_port
        self.admin_user = admin_user
        self.admin_password = admin_password
        self.start_s = 0.0
        """How long the cluster took to start and form (seconds; for printing only)."""
        self._procs: dict[str, ManagedProcess] = {}

    def process_group(self, node: RabbitNode) -> int | None:
        """The process group of ``node``'s VM (its script's pid), None when it is not running:
        what a benchmark measures, and what a test may signal."""
        proc = self._procs.get(node.name)
        return proc.pid if proc is not None and proc.running else None

    # -- the CLI ---------------------------------------------------------------------------

    def cli_env(self) -> dict[str, str]:
        """The environment under which ``rabbitmqctl`` reaches this cluster's nodes."""
        return _base_env(self._paths, epmd_port=self.epmd_port) | {
            # The CLI's own distribution listener: an ephemeral loopback port (the default
            # range is fixed at 35672-35682, which runs of other tests would share).
            "RABBITMQ_CTL_DIST_PORT_MIN": "0",
            "RABBITMQ_CTL_DIST_PORT_MAX": "0",
            "RABBITMQ_CTL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def ctl(self, node: RabbitNode, *args: str, timeout_s: float = CTL_TIMEOUT_S) -> str:
        """Run ``rabbitmqctl -n <node> <args>`` and return its standard output.

        Raises:
            RabbitCtlError: It exited non-zero or timed out (with its output).
        """
        return _run_ctl(self.cli_env(), node, list(args), timeout_s=timeout_s)

    def ctl_json(self, node: RabbitNode, *args: str) -> Any:
        """:meth:`ctl` with ``--formatter json``, parsed."""
        return json.loads(self.ctl(node, *args, "--formatter", "json") or "null")

    def eval(self, node: RabbitNode, expression: str) -> str:
        """Evaluate an Erlang expression on ``node`` (``rabbitmqctl eval``); its printed value."""
        return self.ctl(node, "eval", expression).strip()

    def running_nodes(self, node: RabbitNode) -> set[str]:
        """The nodes that ``node``'s ``cluster_status`` lists as running."""
        status = self.ctl_json(node, "cluster_status")
        return set(status.get("running_nodes", []))

    # -- users and connections -------------------------------------------------------------

    def add_device_user(
        self, cn: str, *, write_topics: str, read_topics: str, node: RabbitNode | None = None
    ) -> None:
        """Create a user for certificate login as ``cn`` (no password) with MQTT permissions.

        Its vhost permissions cover what the MQTT plugin does for it (publish to
        ``amq.topic``, its own ``mqtt-subscription-*`` queues); its topic permissions on
        ``amq.topic`` are the routing-key regexes ``write_topics`` (publish) and
        ``read_topics`` (subscribe). MQTT ``/`` is ``.`` in routing keys.

        Raises:
            RabbitCtlError: A command failed.
        """
        target = node or self.nodes[0]
        # 3.10's add_user wants a password: a random one, cleared at once.
        self.ctl(target, "add_user", cn, secrets.token_hex(16))
        self.ctl(target, "clear_password", cn)
        queues = r"mqtt-subscription-.*"
        self.ctl(
            target,
            "set_permissions", "-p", VHOST, cn,
            f"^{queues}$", rf"^(amq\.topic|{queues})$", rf"^(amq\.topic|{queues})$",
        )  # fmt: skip
        self.ctl(
            target,
            "set_topic_permissions", "-p", VHOST, cn, MQTT_EXCHANGE, write_topics, read_topics,
        )  # fmt: skip

    def mqtt_connections(self, node: RabbitNode) -> list[MqttConnection]:
        """The MQTT connections held by ``node``, at once (``rabbitmqctl list_mqtt_connections``).

        On 3.10 ``list_connections`` shows no MQTT connection, and ``list_mqtt_connections``
        lists the whole cluster's: a connection's pid, ``<NODE.N.N.N>`` in the table output
        (the JSON output renders it unusably as ``#PID<N.N.N>``), names the node holding it.
        """
        out = self.ctl(
            node, "-s", "list_mqtt_connections", "connection", "user", "client_id", "conn_name"
        )
        found = []
        for line in out.splitlines():
            pid, user, client_id, conn_name = line.split("\t")
            if pid.startswith(f"<{node.name}."):
                found.append(
                    MqttConnection(user=user, client_id=client_id, name=conn_name, node=node.name)
                )
        return found

    def close_mqtt_connections(
        self, node: RabbitNode, *, user: str, reason: str, timeout_s: float = MGMT_TIMEOUT_S
    ) -> int:
        """Close ``user``'s MQTT connections held by ``node``, through its management API.

        On 3.10, ``rabbitmqctl close_connection`` and ``close_all_user_connections`` do not
        reach MQTT connections (the node logs "no running cluster node reported it as an
        active connection" and returns ok). The management API lists them (type ``direct``,
        protocol ``MQTT 3.1.1``) once their first stats arrive, a few seconds after connect,
        so this waits (bounded) for the connections :meth:`mqtt_connections` lists to show up
        there, then deletes each (``DELETE /api/connections/<name>``, ``X-Reason``).

        Returns:
            How many were closed.

        Raises:
            Unavailable: The management API did not list them within ``timeout_s``.
        """
        names = {c.name for c in self.mqtt_connections(node) if c.user == user}
        if not names:
            return 0
        with httpx.Client(
            base_url=f"http://127.0.0.1:{node.mgmt_port}/api",
            auth=(self.admin_user, self.admin_password),
            timeout=10,
        ) as api:

            def listed() -> bool:
                rows = api.get("/connections").raise_for_status().json()
                return names <= {r["name"] for r in rows if r.get("node") == node.name}

            wait_until(listed, timeout_s=timeout_s, what="the management API lists them")
            for name in names:
                api.delete(
                    f"/connections/{quote(name, safe='')}", headers={"X-Reason": reason}
                ).raise_for_status()
        return len(names)

    def clear_pem_cache(self) -> None:
        """Clear the ssl application's PEM cache on every node (``ssl:clear_pem_cache()``).

        Not needed after the CRL folder changes (``ssl_crl_hash_dir`` reads it at every
        handshake; the revocation test relies on that, with no reload). It is what a changed
        CA bundle, server certificate or key *file* needs: the ssl application caches those
        by file name. Connections made before stay up either way.
        """
        for node in self.nodes:
            self.eval(node, "ssl:clear_pem_cache().")

    # -- clients ---------------------------------------------------------------------------

    def amqp_parameters(self, node: RabbitNode) -> pika.ConnectionParameters:
        """pika's connection parameters for ``node``'s AMQP port as the administrator."""
        return pika.ConnectionParameters(
            host="127.0.0.1",
            port=node.amqp_port,
            virtual_host=VHOST,
            credentials=pika.PlainCredentials(self.admin_user, self.admin_password),
            connection_attempts=1,
            socket_timeout=10,
            blocked_connection_timeout=30,
        )

    def log_tail(self, node: RabbitNode, max_chars: int = LOG_TAIL_CHARS) -> str:
        """The end of ``node``'s log, for failure messages."""
        return _log_tail(node, max_chars=max_chars)


def _log_tail(node: RabbitNode, *, max_chars: int = LOG_TAIL_CHARS) -> str:
    parts = []
    for log in (node.log_file, node.base / "stdout.log"):
        try:
            parts.append(f"--- {log}\n" + log.read_text(errors="replace")[-max_chars:])
        except OSError:
            parts.append(f"--- {log}: (none)")
    return "\n".join(parts)


def _run_ctl(env: Mapping[str, str], node: RabbitNode, args: list[str], *, timeout_s: float) -> str:
    argv = [str(RABBIT_BIN / "rabbitmqctl"), "-n", node.name, "-q", *args]
    try:
        result = subprocess.run(
            argv,
            env=dict(env),
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise RabbitCtlError(f"rabbitmqctl {' '.join(args)}: no answer in {timeout_s} s") from exc
    if result.returncode != 0:
        raise RabbitCtlError(
            f"rabbitmqctl -n {node.name} {' '.join(args)} failed ({result.returncode}): "
            f"{result.stdout.strip()} {result.stderr.strip()}"
        )
    return result.stdout


def _base_env(paths: _Paths, *, epmd_port: int) -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR")
    return {k: os.environ[k] for k in keep if k in os.environ} | {
        "HOME": str(paths.home),  # .erlang.cookie: the cluster's private cookie
        "ERL_EPMD_PORT": str(epmd_port),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "RABBITMQ_CONF_ENV_FILE": "/dev/null",  # not /etc/rabbitmq/rabbitmq-env.conf
        "LC_ALL": os.environ.get("LC_ALL", "C.UTF-8"),
    }


def _conf(
    node: RabbitNode, *, admin_user: str, admin_password: str, bare: bool = False
) -> dict[str, str]:
    """The node's ``rabbitmq.conf`` (sysctl format) as keys and values (``bare``: MQTT clients
    log in anonymously as the administrator instead of as their certificate's CN)."""
    conf = {
        "listeners.tcp.default": f"127.0.0.1:{node.amqp_port}",
        "listeners.ssl": "none",
        "loopback_users": "none",
        "default_vhost": VHOST,
        "default_user": admin_user,
        "default_pass": admin_password,
        "default_user_tags.administrator": "true",
        "default_permissions.configure": ".*",
        "default_permissions.read": ".*",
        "default_permissions.write": ".*",
        "mqtt.listeners.tcp": "none",
        "mqtt.listeners.ssl.default": f"127.0.0.1:{node.mqtt_tls_port}",
        "mqtt.allow_anonymous": "false",
        "mqtt.ssl_cert_login": "true",
        "ssl_cert_login_from": "common_name",
        "mqtt.vhost": VHOST,
        "mqtt.exchange": MQTT_EXCHANGE,
        "management.tcp.ip": "127.0.0.1",
        "management.tcp.port": str(node.mgmt_port),
        "log.file.level": "info",
        "log.console": "false",
    }
    if bare:
        conf |= {
            "mqtt.allow_anonymous": "true",
            "mqtt.ssl_cert_login": "false",
            "mqtt.default_user": admin_user,
            "mqtt.default_pass": admin_password,
        }
    return conf


def _advanced_config(
    paths: _Paths, *, bare: bool = False
) -> list[tuple[Atom, list[tuple[Atom, object]]]]:
    """The ``advanced.config`` terms: the TLS options (the CRL cache cannot be said in
    rabbitmq.conf on 3.10, and ``ssl_options`` set here replaces the whole list, so all of it
    is here), and how often the cached CA bundle is re-checked. ``bare``: no CRL check."""
    crl_cache = (Atom("ssl_crl_hash_dir"), (Atom("internal"), [(Atom("dir"), paths.crl_dir)]))
    ssl_options: list[tuple[Atom, object]] = [
        (Atom("cacertfile"), paths.ca_bundle),
        (Atom("certfile"), paths.server_cert),
        (Atom("keyfile"), paths.server_key),
        (Atom("versions"), [Atom("tlsv1.3")]),
        (Atom("verify"), Atom("verify_peer")),
        (Atom("fail_if_no_peer_cert"), True),
    ]
    if not bare:
        ssl_options += [(Atom("crl_check"), Atom("peer")), (Atom("crl_cache"), crl_cache)]
    return [
        (Atom("rabbit"), [(Atom("ssl_options"), ssl_options)]),
        (Atom("ssl"), [(Atom("ssl_pem_cache_clean"), PEM_CACHE_CLEAN_MS)]),
    ]


def _write_node_files(
    node: RabbitNode, paths: _Paths, *, admin_user: str, admin_password: str, bare: bool
) -> None:
    (node.base / "log").mkdir(parents=True, exist_ok=True)
    (node.base / "mnesia").mkdir(exist_ok=True)
    conf = _conf(node, admin_user=admin_user, admin_password=admin_password, bare=bare)
    (node.base / "rabbitmq.conf").write_text("".join(f"{k} = {v}\n" for k, v in conf.items()))
    advanced = _advanced_config(paths, bare=bare)
    (node.base / "advanced.config").write_text(erlang_term(advanced) + ".\n")
    (node.base / "enabled_plugins").write_text(erlang_term([Atom(p) for p in PLUGINS]) + ".\n")


def _node_env(node: RabbitNode, paths: _Paths, *, epmd_port: int) -> dict[str, str]:
    return _base_env(paths, epmd_port=epmd_port) | {
        "RABBITMQ_NODENAME": node.name,
        "RABBITMQ_USE_LONGNAME": "false",
        "RABBITMQ_MNESIA_BASE": str(node.base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(node.base / "log"),
        "RABBITMQ_LOGS": str(node.log_file),
        "RABBITMQ_PID_FILE": str(node.base / "node.pid"),
        "RABBITMQ_CONFIG_FILE": str(node.base / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(node.base / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(node.base / "enabled_plugins"),
        "RABBITMQ_DIST_PORT": str(node.dist_port),
        # Distribution on loopback only; never start a system epmd (the cluster's runs).
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
            "-kernel inet_dist_use_interface {127,0,0,1} -start_epmd false"
        ),
        # Two cores shared with other tests: no busy-waiting schedulers.
        "RABBITMQ_SCHEDULER_BUSY_WAIT_THRESHOLD": "none",
    }


def _new_node(root: Path, *, run_id: str, index: int) -> RabbitNode:
    letter = string.ascii_lowercase[index]
    return RabbitNode(
        name=f"tf{run_id}{letter}@localhost",
        amqp_port=free_port(),
        mqtt_tls_port=free_port(),
        mgmt_port=free_port(),
        dist_port=free_port(),
        base=root / f"node-{letter}",
    )


def _check_host() -> None:
    for tool in (RABBIT_BIN / "rabbitmq-server", RABBIT_BIN / "rabbitmqctl"):
        if not tool.is_file():
            raise RabbitUnavailable(f"{tool} not found; install rabbitmq-server")
    if shutil.which("epmd") is None:
        raise RabbitUnavailable("epmd not found; install rabbitmq-server (erlang-base)")


def _start_epmd(paths: _Paths, stack: ExitStack) -> int:
    port = free_port()
    epmd = ManagedProcess(
        ["epmd", "-port", str(port), "-address", "127.0.0.1"],
        log=paths.root / "epmd.log",
        env=_base_env(paths, epmd_port=port),
        ready=lambda: port_open(port),
        name="epmd",
    )
    epmd.start(timeout_s=30)
    stack.callback(epmd.stop)
    return port


def _start_node(
    cluster: RabbitCluster, node: RabbitNode, stack: ExitStack, *, start_timeout_s: float
) -> None:
    proc = ManagedProcess(
        [RABBIT_BIN / "rabbitmq-server"],
        log=node.base / "stdout.log",
        env=_node_env(node, cluster._paths, epmd_port=cluster.epmd_port),
        cwd=node.base,
        name=node.name,
    )
    proc.start()
    cluster._procs[node.name] = proc
    stack.callback(_stop_node, cluster, node, proc)

    def booted() -> bool:
        if not proc.running:
            raise Unavailable(f"{node.name} exited with {proc.proc and proc.proc.returncode}")
        try:
            cluster.ctl(node, "await_startup", "--timeout", "5", timeout_s=30)
        except RabbitCtlError:
            return False
        return True

    _wait(booted, node, timeout_s=start_timeout_s, what=f"RabbitMQ node {node.name} boots")


def _stop_node(cluster: RabbitCluster, node: RabbitNode, proc: ManagedProcess) -> None:
    if proc.running:
        try:
            cluster.ctl(node, "stop", timeout_s=STOP_TIMEOUT_S)
            wait_until(
                lambda: not proc.running, timeout_s=STOP_TIMEOUT_S, what=f"{node.name} stops"
            )
        except (RabbitCtlError, Unavailable):
            pass  # the group is stopped below all the same
    proc.stop(timeout_s=STOP_TIMEOUT_S)


def _wait(check: Callable[[], object], node: RabbitNode, *, timeout_s: float, what: str) -> None:
    try:
        wait_until(check, timeout_s=timeout_s, what=what, poll_s=0.5)
    except Unavailable as exc:
        raise Unavailable(f"{exc}\n{_log_tail(node)}") from None


def _join(cluster: RabbitCluster, node: RabbitNode) -> None:
    first = cluster.nodes[0]
    try:
        cluster.ctl(node, "stop_app")
        cluster.ctl(node, "join_cluster", first.name)
        cluster.ctl(node, "start_app")
    except RabbitCtlError as exc:
        raise Unavailable(
            f"{node.name} did not join {first.name}: {exc}\n{_log_tail(node)}"
        ) from exc


@contextmanager
def rabbitmq_cluster(
    tmp_dir: Path,
    *,
    nodes: int = 2,
    server_cert: Path,
    server_key: Path,
    ca_bundle: Path,
    crl_dir: Path,
    start_timeout_s: float = NODE_START_TIMEOUT_S,
    bare: bool = False,
) -> Iterator[RabbitCluster]:
    """Start a RabbitMQ cluster of ``nodes`` nodes on loopback; stop and delete it afterwards.

    Args:
        tmp_dir: A folder under which the cluster's own folder is made (and removed after).
        nodes: How many nodes (1 to 26).
        server_cert: The MQTT TLS listener's certificate chain (PEM).
        server_key: Its key (PEM).
        ca_bundle: The CAs whose client certificates are accepted (PEM).
        crl_dir: The hashed CRL folder (``support.rabbitmq_pki.write_hashed_crl``); each client
            certificate's issuer needs a CRL there, or the handshake fails (``crl_check = peer``).
        start_timeout_s: Bound on one node's boot.
        bare: A stock broker for baselines (benchmarks/fleet.py): client certificates are
            verified against ``ca_bundle`` but no CRL is checked (``crl_dir`` is unused), and
            MQTT clients log in anonymously as the administrator (no per-device user or topic
            permission).

    Yields:
        The running cluster, every node listed as running by ``cluster_status``.

    Raises:
        RabbitUnavailable: RabbitMQ is not installed here.
        Unavailable: A node did not boot or join in time (with the end of its log).
    """
    if not 1 <= nodes <= 26:
        raise ValueError("nodes must be 1 to 26")
    _check_host()
    tmp_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="rmq-", dir=tmp_dir))
    paths = _Paths(
        root=root,
        home=root / "home",
        server_cert=server_cert,
        server_key=server_key,
        ca_bundle=ca_bundle,
        crl_dir=crl_dir,
    )
    paths.home.mkdir(mode=0o700)
    cookie = paths.home / ".erlang.cookie"
    cookie.write_text(secrets.token_hex(20).upper())
    cookie.chmod(0o400)
    run_id = secrets.token_hex(4)
    admin_user, admin_password = f"tfadmin{run_id}", secrets.token_urlsafe(18)
    members = [_new_node(root, run_id=run_id, index=i) for i in range(nodes)]
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, root, True)
        started = time.monotonic()
        epmd_port = _start_epmd(paths, stack)
        cluster = RabbitCluster(
            paths,
            nodes=members,
            epmd_port=epmd_port,
            admin_user=admin_user,
            admin_password=admin_password,
        )
        for node in members:
            _write_node_files(
                node, paths, admin_user=admin_user, admin_password=admin_password, bare=bare
            )
        _start_node(cluster, members[0], stack, start_timeout_s=start_timeout_s)
        for node in members[1:]:
            _start_node(cluster, node, stack, start_timeout_s=start_timeout_s)
            _join(cluster, node)
        want = {node.name for node in members}
        _wait(
            lambda: cluster.running_nodes(members[0]) >= want,
            members[0],
            timeout_s=CLUSTER_TIMEOUT_S,
            what=f"cluster_status lists {sorted(want)} running",
        )
        cluster.start_s = time.monotonic() - started
        yield cluster
