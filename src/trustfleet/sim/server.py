"""A TrustFleet server for the harness: its home, its ``server run`` process, its store.

:class:`SimServer` makes a home through the services (as ``trustfleet server init`` does),
applies typed settings overrides, and runs ``trustfleet server run`` as a
:class:`~trustfleet.sim.process.ManagedProcess` that is ready when the product says so:
``GET /readyz`` over TLS, trusting the home's CA bundle, answers 200. It is stopped by its
process group, never by name.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from trustfleet.errors import Unavailable
from trustfleet.services.ceremony import CeremonyKeys, read_pin_file
from trustfleet.services.first_admin import create_server_home
from trustfleet.services.home import HomeOptions
from trustfleet.services.runtime import Runtime
from trustfleet.settings import ServerSettings, load_server_settings, update_server_settings
from trustfleet.sim.overrides import Changes
from trustfleet.sim.process import READY_TIMEOUT_S, ManagedProcess, free_port

__all__ = ["CLI_TIMEOUT_S", "SimServer", "console_script", "https_status"]

CLI_TIMEOUT_S = 180.0
PROBE_TIMEOUT_S = 5.0


def console_script(name: str) -> Path:
    """An installed console script (``trustfleet``, ``trustfleet-agent``) of this interpreter."""
    return Path(sys.executable).parent / name


def https_status(url: str, *, cafile: Path, timeout_s: float = PROBE_TIMEOUT_S) -> int | None:
    """The HTTP status of ``GET url`` trusting only ``cafile``; None if nothing answered."""
    context = ssl.create_default_context(cafile=str(cafile))
    try:
        with urllib.request.urlopen(url, context=context, timeout=timeout_s) as resp:  # noqa: S310 - https to the harness's own server
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ssl.SSLError):
        return None


def _offline_of(home: Path) -> Path:
    """The offline folder a home names (``[lifecycle] offline_dir``), else ``home/../offline``."""
    if (home / "trustfleet.toml").is_file():
        named = load_server_settings(home).lifecycle.offline_dir
        if named:
            return Path(named)
    return home.parent / "offline"


class SimServer:
    """A server home and its ``trustfleet server run`` process.

    Args:
        home: The server home (made by :meth:`create` or ``trustfleet server init``).
        api_port: The HTTPS port (default: the home's ``[api] port``).
        mqtt_port: The broker's port to pass to ``server run`` (default: the home's).
        log: Where the process writes (default: ``home/../server.log``).
        workers: HTTPS worker processes.
        offline: The offline folder (default: the home's ``[lifecycle] offline_dir``, else
            ``home/../offline``).
        pins_dir: The offline tokens' PIN files ``<token>.pin`` (default: beside the offline
            folder, ``<offline>-pins``), what custodians would type in a ceremony.
    """

    def __init__(
        self,
        home: Path,
        *,
        api_port: int | None = None,
        mqtt_port: int | None = None,
        log: Path | None = None,
        workers: int = 1,
        offline: Path | None = None,
        pins_dir: Path | None = None,
    ) -> None:
        self.home = home
        self.offline = offline or _offline_of(home)
        self.pins_dir = pins_dir or self.offline.with_name(self.offline.name + "-pins")
        self._api_port = api_port
        self._mqtt_port = mqtt_port
        self.log = log or home.parent / "server.log"
        self.workers = workers
        self.process: ManagedProcess | None = None
        self._runtime: Runtime | None = None
        self.admin_password: str | None = None  # the first admin's one-time one, from create()

    @classmethod
    def create(
        cls,
        home: Path,
        *,
        now: datetime,
        organization: str = "TrustFleet",
        store_url: str | None = None,
        overrides: Changes | None = None,
        log: Path | None = None,
    ) -> SimServer:
        """A new home on free loopback ports, with ``overrides`` applied (not started).

        Raises:
            Conflict: ``home`` exists and is not empty.
            InvalidInput: An override names an unknown setting or has a refused value.
        """
        api_port, mqtt_port = free_port(), free_port()
        offline, pins_dir = home.parent / "offline", home.parent / "offline-pins"
        options = HomeOptions(
            organization=organization, api_port=api_port, mqtt_port=mqtt_port,
            store_url=store_url, offline=offline, pins_out=pins_dir,
        )  # fmt: skip
        made = create_server_home(home, options=options, now=now)
        if overrides:
            update_server_settings(home, overrides)
        server = cls(
            home, api_port=api_port, mqtt_port=mqtt_port, log=log, offline=offline,
            pins_dir=pins_dir,
        )  # fmt: skip
        server.admin_password = made.admin_password
        return server

    def __repr__(self) -> str:
        return f"<SimServer {self.home} {self.process!r}>"

    # -- where it is ------------------------------------------------------------------

    @property
    def settings(self) -> ServerSettings:
        """The home's settings as they are on disk now."""
        return load_server_settings(self.home)

    @property
    def api_port(self) -> int:
        """The HTTPS port."""
        return self._api_port or self.settings.api.port

    @property
    def mqtt_port(self) -> int:
        """The broker's device port."""
        return self._mqtt_port or self.settings.broker.port

    @property
    def base_url(self) -> str:
        """``https://localhost:PORT`` (the name the server certificate carries)."""
        return f"https://localhost:{self.api_port}"

    @property
    def ca_bundle(self) -> Path:
        """The home's CA bundle (what clients trust)."""
        return self.home / "public" / "ca-bundle.pem"

    @property
    def pid(self) -> int:
        """The ``server run`` process's pid (it leads its own process group)."""
        if self.process is None:
            raise Unavailable("the server was not started")
        return self.process.pid

    # -- ceremonies -------------------------------------------------------------------

    def pin_files(self, tokens: Sequence[str] | None = None) -> dict[str, Path]:
        """The PIN file of each offline token (``tokens``: only those; default: all)."""
        found = {path.name.removesuffix(".pin"): path for path in self.pins_dir.glob("*.pin")}
        if tokens is None:
            return dict(sorted(found.items()))
        return {token: found[token] for token in tokens}

    def ceremony_args(self, tokens: Sequence[str] | None = None) -> list[str]:
        """``--offline DIR --pin-file TOKEN=PATH …`` for a ceremony command (``tokens``: the
        custodians present; default: all)."""
        args = ["--offline", str(self.offline)]
        for token, path in self.pin_files(tokens).items():
            args += ["--pin-file", f"{token}={path}"]
        return args

    def ceremony_keys(self, tokens: Sequence[str] | None = None) -> CeremonyKeys:
        """The offline folder and the PINs of ``tokens`` (default: all) for service calls."""
        pins = {token: read_pin_file(path) for token, path in self.pin_files(tokens).items()}
        return CeremonyKeys(offline=self.offline, pins=pins)

    # -- its process ------------------------------------------------------------------

    def configure(self, changes: Changes) -> ServerSettings:
        """Apply typed settings changes to the home (before :meth:`start`)."""
        return update_server_settings(self.home, changes)

    def ready(self) -> bool:
        """Whether ``GET /readyz`` answers 200 (every component of the server is up)."""
        return https_status(f"{self.base_url}/readyz", cafile=self.ca_bundle) == 200

    def start(self, *, timeout_s: float = READY_TIMEOUT_S) -> SimServer:
        """Start ``trustfleet server run`` and wait until it is ready.

        Raises:
            Unavailable: It exited, or was not ready within ``timeout_s``.
        """
        argv: list[str | Path] = [console_script("trustfleet"), "server", "run"]
        argv += ["--home", self.home, "--api-port", str(self.api_port)]
        argv += ["--workers", str(self.workers)]
        if self._mqtt_port is not None:
            argv += ["--mqtt-port", str(self._mqtt_port)]
        self.process = ManagedProcess(argv, log=self.log, ready=self.ready, name="server")
        self.process.start(timeout_s=timeout_s)
        return self

    def stop(self) -> None:
        """Close this process's store handle and stop the server's process group."""
        self.close_runtime()
        if self.process is not None:
            self.process.stop()

    # -- reading it -------------------------------------------------------------------

    @property
    def runtime(self) -> Runtime:
        """The home's runtime in this process (opened on first use, keys opened lazily)."""
        if self._runtime is None:
            self._runtime = Runtime.open(self.settings)
        return self._runtime

    def close_runtime(self) -> None:
        """Close the runtime opened by :attr:`runtime`, if any."""
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None

    def cli(
        self, *args: str | Path, timeout_s: float = CLI_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        """Run ``trustfleet ARGS --home HOME``; its output (never raises on an exit code)."""
        return subprocess.run(
            [str(console_script("trustfleet")), *map(str, args), "--home", str(self.home)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
