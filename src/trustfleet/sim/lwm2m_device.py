"""The simulator's LwM2M device: bootstrap, register, report, update firmware (docs/lwm2m.md).

Run as ``python -m trustfleet.sim.lwm2m_device --device DIR [--once] [--json]``. It reads the
``[lwm2m]`` section of ``DIR/device.toml`` and its SoftHSM2 token, asks the bootstrap server for
its device-management server and credential (when ``bootstrap = true`` and it has none yet),
registers there, answers reads/writes/executes/observations over its objects (0, 1, 3, 3303, 5),
sends updates before its lifetime ends and de-registers when stopped. ``--once`` registers,
sends one reading and de-registers. The request handling is pure (``_lwm2m_tree``/``_lwm2m_coap``);
this module is the thin I/O around it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import signal
import sys
from collections.abc import Sequence
from dataclasses import field
from pathlib import Path
from urllib.parse import urlsplit

from trustfleet.configfile.device import DeviceSettings, Lwm2mSection, load_device_settings
from trustfleet.errors import Config, TrustFleetError
from trustfleet.lwm2m.coap import Code, Message, MessageType, Option, option_uint, request
from trustfleet.lwm2m.dtls_client import DtlsClient, DtlsClientConfig
from trustfleet.sim._lwm2m_coap import encode_reply, handle_message
from trustfleet.sim._lwm2m_firmware import download_firmware, install_firmware
from trustfleet.sim._lwm2m_link import CoapLink
from trustfleet.sim._lwm2m_state import load_state, save_state
from trustfleet.sim._lwm2m_token import DM_SUFFIX, DeviceToken, device_token
from trustfleet.sim._lwm2m_tree import CONTENT, Action, ObjectTree

__all__ = ["DeviceRun", "main", "run_device"]

logger = logging.getLogger(__name__)

CIPHERS = (
    "PSK-AES128-CCM8",
    "PSK-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "@SECLEVEL=0",
)
LINK_FORMAT = 40
READING_PERIOD_S = 5.0
OBJECT_LINKS = "</1/0>,</3/0>,</3303/0>,</5/0>"


@dataclasses.dataclass(slots=True, kw_only=True)
class DeviceRun:
    """What one run did (printed with --json)."""

    device_id: str
    bootstrapped: bool = False
    registered: bool = False
    location: str = ""
    updates: int = 0
    notifications: int = 0
    firmware_version: str = ""
    errors: list[str] = field(default_factory=list)


def _dtls_config(
    uri: str,
    *,
    section: Lwm2mSection,
    settings: DeviceSettings,
    token: DeviceToken,
    psk: tuple[str, bytes] | None,
) -> DtlsClientConfig:
    parts = urlsplit(uri)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5684
    if psk is not None:
        return DtlsClientConfig(
            host=host, port=port, ciphers=CIPHERS, psk_identity=psk[0], psk_key=psk[1]
        )
    return DtlsClientConfig(
        host=host,
        port=port,
        ciphers=CIPHERS,
        certificate=settings.path(settings.identity.ldevid),
        key_uri=token.key_uri,
        module=token.module,
        softhsm_conf=token.conf,
        ca_file=settings.path(settings.server.trust_bundle),
    )


class Device:
    """One simulated device: its objects, its token, its state file."""

    def __init__(self, settings: DeviceSettings, *, once: bool) -> None:
        if settings.lwm2m is None:
            raise Config("device.toml has no [lwm2m] section", code="lwm2m.device.config")
        self.settings = settings
        self.section = settings.lwm2m
        self.once = once
        self.token = device_token(settings)
        self.firmware_dir = settings.path(self.section.firmware_dir)
        self.state = load_state(self.firmware_dir)
        self.tree = ObjectTree(
            manufacturer="TrustFleet",
            model=settings.device.model,
            serial=settings.device.id,
            firmware_version=self.state.version,
        )
        self.run = DeviceRun(device_id=settings.device.id, firmware_version=self.state.version)
        self.stopping = asyncio.Event()
        self.observations: dict[bytes, tuple[int, ...]] = {}
        self.observe_seq = 2

    # -- bootstrap ---------------------------------------------------------------------------

    async def bootstrap(self) -> None:
        """Ask the bootstrap server for the DM server; keep its PSK in the token."""
        psk = None
        if self.section.security == "psk":
            psk = (
                self.section.psk_identity or self.settings.device.id,
                self.token.read_psk(self.section.psk_label),
            )
        config = _dtls_config(
            self.section.server_uri,
            section=self.section,
            settings=self.settings,
            token=self.token,
            psk=psk,
        )
        async with DtlsClient(config) as client:
            link = CoapLink(
                client, on_request=lambda m: handle_message(self.tree, m, bootstrap=True)
            )
            query = (f"ep={self.settings.device.id}", "pct=11542")
            answer = await link.exchange(
                request(
                    Code.POST,
                    path="/bs",
                    message_id=link.next_id(),
                    token=link.new_token(),
                    query=query,
                )
            )
            if answer.code != Code.CHANGED:
                raise TrustFleetError(
                    f"bootstrap request refused ({answer.code})", code="lwm2m.device.bootstrap"
                )
            while not any(a.kind == "bootstrap_finished" for a in self.tree.actions):
                if await link.receive(timeout_s=30) is None and not self.tree.actions:
                    raise TrustFleetError(
                        "the bootstrap server never finished", code="lwm2m.device.bootstrap"
                    )
        self.tree.take_actions()
        dm = self.tree.dm_server()
        if dm is None:  # pragma: no cover - bootstrap_finish checked it
            return
        uri, identity, secret = dm
        if secret:
            self.token.store_psk(self.section.psk_label + DM_SUFFIX, secret)
        self.state = dataclasses.replace(self.state, dm_uri=uri, dm_identity=identity)
        save_state(self.firmware_dir, self.state)
        self.run.bootstrapped = True

    # -- registration ------------------------------------------------------------------------

    def _dm_config(self) -> DtlsClientConfig:
        if self.section.security == "cert":
            uri = self.state.dm_uri or self.section.server_uri
            return _dtls_config(
                uri, section=self.section, settings=self.settings, token=self.token, psk=None
            )
        if self.state.dm_identity:
            psk = (self.state.dm_identity, self.token.read_psk(self.section.psk_label + DM_SUFFIX))
            return _dtls_config(
                self.state.dm_uri,
                section=self.section,
                settings=self.settings,
                token=self.token,
                psk=psk,
            )
        psk = (self.section.psk_identity, self.token.read_psk(self.section.psk_label))
        return _dtls_config(
            self.section.server_uri,
            section=self.section,
            settings=self.settings,
            token=self.token,
            psk=psk,
        )

    def _answer(self, message: Message) -> Message:
        response = handle_message(self.tree, message, bootstrap=False)
        path = tuple(int(p) for p in message.uri_path() if p.isdigit())
        if message.observe() == 0 and response.code == CONTENT:
            self.observations[message.token] = path
        elif message.observe() == 1:
            self.observations.pop(message.token, None)
        return response

    async def register(self, link: CoapLink) -> str:
        """Register; the location path of the registration."""
        query = (
            f"ep={self.settings.device.id}",
            f"lt={self.section.lifetime_s}",
            "lwm2m=1.1",
            "b=U",
        )
        answer = await link.exchange(
            request(
                Code.POST,
                path="/rd",
                message_id=link.next_id(),
                token=link.new_token(),
                query=query,
                payload=OBJECT_LINKS.encode(),
                content_format=LINK_FORMAT,
            )
        )
        if answer.code != Code.CREATED:
            raise TrustFleetError(
                f"registration refused ({answer.code})", code="lwm2m.device.register"
            )
        location = "/" + "/".join(answer.location_path())
        self.run.registered, self.run.location = True, location
        return location

    async def notify(self, link: CoapLink) -> None:
        """A new reading; a notification for each observation of it."""
        self.tree.set_reading(20.0 + random.uniform(-2.0, 2.0))  # noqa: S311  # a simulated sensor
        for token, path in list(self.observations.items()):
            reply = self.tree.handle_read(path)
            payload, form = encode_reply(reply, path=path)
            self.observe_seq += 1
            options = [(Option.OBSERVE, option_uint(self.observe_seq & 0xFFFFFF))]
            if form is not None:
                options.append((Option.CONTENT_FORMAT, option_uint(form)))
            await link.send(
                Message(
                    type=MessageType.NON,
                    code=Code.CONTENT,
                    message_id=link.next_id(),
                    token=token,
                    options=tuple(options),
                    payload=payload,
                )
            )
            self.run.notifications += 1

    async def session(self) -> None:
        """Register at the DM server, serve it until stopped (or once), de-register."""
        async with DtlsClient(self._dm_config()) as client:
            link = CoapLink(client, on_request=self._answer)
            location = await self.register(link)
            await self._serve(link, location)
            answer = await link.exchange(
                request(
                    Code.DELETE, path=location, message_id=link.next_id(), token=link.new_token()
                )
            )
            if answer.code != Code.DELETED:
                self.run.errors.append(f"de-register answered {answer.code}")

    async def _serve(self, link: CoapLink, location: str) -> None:
        loop = asyncio.get_running_loop()
        next_update = loop.time() + self.section.lifetime_s / 2
        next_reading = loop.time() + (0 if self.once else READING_PERIOD_S)
        while not self.stopping.is_set():
            await link.receive(timeout_s=0.5)
            for action in self.tree.take_actions():
                await self._act(link, action, location)
            now = loop.time()
            if now >= next_reading:
                await self.notify(link)
                next_reading = now + READING_PERIOD_S
                if self.once:
                    return
            if now >= next_update:
                await link.exchange(
                    request(
                        Code.POST, path=location, message_id=link.next_id(), token=link.new_token()
                    )
                )
                self.run.updates += 1
                next_update = now + self.section.lifetime_s / 2

    async def _act(self, link: CoapLink, action: Action, location: str) -> None:
        if action.kind == "download":
            await download_firmware(self, link, action.argument)
        elif action.kind == "update":
            install_firmware(self)
            await link.exchange(
                request(Code.POST, path=location, message_id=link.next_id(), token=link.new_token())
            )
        elif action.kind == "reboot":
            await link.exchange(
                request(Code.POST, path=location, message_id=link.next_id(), token=link.new_token())
            )


async def run_device(
    directory: Path, *, once: bool, stop: asyncio.Event | None = None
) -> DeviceRun:
    """Run the device in ``directory`` until SIGTERM/SIGINT, ``stop``, or one reading (``once``)."""
    device = Device(load_device_settings(directory), once=once)
    if stop is not None:
        device.stopping = stop
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, device.stopping.set)
    if (
        device.section.bootstrap
        and device.section.security == "psk"
        and not device.state.dm_identity
    ):
        await device.bootstrap()
    await device.session()
    device.run.firmware_version = device.tree.firmware_version
    return device.run


def main(argv: Sequence[str] | None = None) -> int:
    """The process entry point: 0 on a clean stop, 1 with one readable line on an error."""
    parser = argparse.ArgumentParser(prog="python -m trustfleet.sim.lwm2m_device")
    parser.add_argument(
        "--device", type=Path, required=True, help="the device folder (device.toml)"
    )
    parser.add_argument("--once", action="store_true", help="register, report once, de-register")
    parser.add_argument("--json", action="store_true", help="print what the run did as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    try:
        run = asyncio.run(run_device(args.device, once=args.once))
    except TrustFleetError as exc:
        print(exc.one_line(), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(dataclasses.asdict(run), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
