"""Starting one Mosquitto process for the supervisor: the child's setup before exec (owner,
parent-death signal, descriptors), waiting until it listens, and the startup errors."""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from trustfleet.broker._config import BrokerConfig
from trustfleet.broker._files import Owner, broker_owner
from trustfleet.broker._process import accepts, raise_open_files, tail_of, terminate
from trustfleet.errors import Config, TrustFleetError, Unavailable
from trustfleet.processes import die_with_parent_preexec

__all__ = ["launch"]

logger = logging.getLogger(__name__)


def _child_setup(wanted: int, owner: Owner, die_with_parent: Callable[[], None]) -> None:
    """In the child before exec: become ``owner``, then die with ``server run``, raise fds.

    Mosquitto started as root drops to its ``user`` by itself, but the kernel clears the
    parent-death signal at that change of uid (a ``kill -9`` of ``server run`` would leave it
    serving, with nobody to kick revoked devices). So the child drops first and asks for the
    signal after: it then survives the exec, and Mosquitto (not root) skips its own drop.
    """
    if owner.uid is not None and owner.gid is not None:
        os.setgroups([])
        os.setgid(owner.gid)
        os.setuid(owner.uid)
    die_with_parent()
    raise_open_files(wanted)


def _child_owner(config: BrokerConfig) -> Owner:
    """Whom Mosquitto starts as: ``run_as`` when we are root (a port below 1024 needs root
    to bind, so there Mosquitto drops privileges itself and ``children.json`` is what stops
    it after a ``kill -9``)."""
    if config.port < 1024:
        return Owner(uid=None, gid=None)
    return broker_owner(config.run_as)


def launch(
    config: BrokerConfig, binary: Path, *, view: Path, dir_fd: int | None
) -> subprocess.Popen[bytes]:
    """Start Mosquitto in its own process group and return once its listener accepts.

    Args:
        config: How the broker runs.
        binary: The ``mosquitto`` executable.
        view: ``HOME/broker`` seen through the inherited descriptor ``dir_fd``.
        dir_fd: The open ``HOME/broker``, passed to the child.

    Raises:
        Config: Mosquitto exited at start.
        Unavailable: The port is in use, or Mosquitto did not come up in time (the process
            is then stopped).
    """
    paths = config.paths
    with paths.log.open("ab") as log:
        process = subprocess.Popen(
            [str(binary), "-c", str(view / paths.conf.name)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            pass_fds=(dir_fd,) if dir_fd is not None else (),
            start_new_session=True,
            preexec_fn=functools.partial(  # noqa: PLW1509  # set*id, prctl, setrlimit: no locks
                _child_setup,
                config.max_open_files,
                _child_owner(config),
                die_with_parent_preexec(),
            ),
        )
    try:
        _await_ready(config, process)
    except TrustFleetError:
        terminate(process, timeout_s=config.stop_timeout_s)
        raise
    logger.info("mosquitto %s listening on %s", process.pid, config.port)
    return process


def _await_ready(config: BrokerConfig, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + config.start_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _startup_error(config, proc.returncode)
        if config.paths.admin_socket.exists() and accepts(config.host, config.port):
            return
        time.sleep(0.05)
    raise Unavailable(
        f"Mosquitto did not listen on port {config.port} within {config.start_timeout_s} s.",
        hint=f"See {config.paths.log}.",
        code="broker.start_timeout",
    )


def _startup_error(config: BrokerConfig, returncode: int) -> TrustFleetError:
    tail = tail_of(config.paths.log)
    if "Address already in use" in tail:
        return Unavailable(
            f"The broker port {config.port} is already in use.",
            hint="Choose another port or stop what is listening there.",
            code="broker.port_in_use",
        )
    last = tail.strip().splitlines()[-1] if tail.strip() else "no output"
    return Config(
        f"Mosquitto exited with status {returncode} at start: {last}",
        hint=f"See {config.paths.log} and {config.paths.conf}.",
        code="broker.start_failed",
    )
