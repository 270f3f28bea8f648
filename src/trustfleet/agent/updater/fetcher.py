"""How the device's TUF client reaches the repository: mutual TLS 1.3 with the token key.

:class:`MtlsFetcher` is an ngclient ``FetcherInterface`` over the awscrt HTTP client, whose
TLS context signs with the device's identity key inside its PKCS#11 token (the same way the
EST client and the MQTT link connect). :class:`HttpFetcher` speaks plain HTTP(S) through
urllib3, for the tuf-conformance adapter (the suite serves plain HTTP) and for tests.

Both add ``fetch_from(url, start)``: a GET with ``Range: bytes=<start>-`` whose answer says
where its body starts (``RangedBody.start``: ``start`` for 206, 0 when the server ignored the
range with 200). Neither follows redirects; every read is bounded in size and time
(:class:`FetchLimits`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable
from urllib.parse import urlsplit

import tuf
import urllib3
from tuf.api import exceptions
from tuf.ngclient.fetcher import FetcherInterface

from trustfleet.agent.updater._http import FetchLimits, RangedBody, body_offset, range_header
from trustfleet.errors import InvalidInput

if TYPE_CHECKING:
    from awscrt import io as crt_io

    from trustfleet.agent.settings import DeviceSettings

__all__ = [
    "FetchLimits",
    "HttpFetcher",
    "MtlsFetcher",
    "RangeFetcher",
    "RangedBody",
    "device_fetcher",
]

logger = logging.getLogger(__name__)

_USER_AGENT = f"trustfleet-agent python-tuf/{tuf.__version__}"
_DEFAULT_LIMITS = FetchLimits()


@runtime_checkable
class RangeFetcher(Protocol):
    """What the resumable download needs from a fetcher."""

    def fetch_from(self, url: str, start: int) -> RangedBody:
        """GET ``url`` from byte ``start`` on (see the module docstring)."""
        ...


class HttpFetcher(FetcherInterface):
    """Plain urllib3 fetcher: no retries, no redirects, bounded chunks and timeouts.

    Args:
        limits: Size and time bounds.
        ca_file: Trust bundle for https URLs (None: the system store).
    """

    def __init__(
        self, *, limits: FetchLimits = _DEFAULT_LIMITS, ca_file: Path | None = None
    ) -> None:
        self.limits = limits
        self._pool = urllib3.PoolManager(
            retries=False,
            timeout=urllib3.Timeout(
                connect=limits.connect_timeout_s, read=limits.read_idle_timeout_s
            ),
            ca_certs=str(ca_file) if ca_file else None,
            headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"},
        )

    def _fetch(self, url: str) -> Iterator[bytes]:
        return self.fetch_from(url, 0)

    def fetch_from(self, url: str, start: int) -> RangedBody:
        """GET ``url`` from byte ``start`` on.

        Raises:
            DownloadHTTPError: An error or redirect status, or a mismatched 206.
            SlowRetrievalError: The server did not answer or went silent in time.
            DownloadError: Any other transport failure.
        """
        try:
            response = self._pool.request(
                "GET", url, headers=range_header(start), preload_content=False, redirect=False
            )
        except urllib3.exceptions.TimeoutError as exc:
            raise exceptions.SlowRetrievalError(f"no answer from {url}") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise exceptions.DownloadError(f"cannot fetch {url}: {exc}") from exc
        try:
            headers = {k.lower(): v for k, v in response.headers.items()}
            offset = body_offset(response.status, headers, start=start)
        except BaseException:
            _discard(response)
            raise
        return RangedBody(self._chunks(response), start=offset)

    def _chunks(self, response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
        received = 0
        complete = False
        try:
            for chunk in response.stream(self.limits.chunk_bytes):
                received += len(chunk)
                if received > self.limits.max_body_bytes:
                    raise exceptions.DownloadLengthMismatchError("the body is longer than allowed")
                yield chunk
            complete = True
        except urllib3.exceptions.TimeoutError as exc:
            raise exceptions.SlowRetrievalError("the server went silent") from exc
        except urllib3.exceptions.HTTPError as exc:  # ProtocolError: cut or short body
            raise exceptions.DownloadError(f"connection lost: {exc}") from exc
        finally:
            if complete:
                response.release_conn()  # fully read: the connection may be reused
            else:
                _discard(response)


def _discard(response: urllib3.BaseHTTPResponse) -> None:
    """Close a connection whose body was not read to the end (never reuse it)."""
    response.close()
    response.release_conn()


class MtlsFetcher(FetcherInterface):
    """ngclient fetcher over awscrt, mutual TLS 1.3 with a key that stays in its token.

    One connection per request (TUF makes a handful per refresh); one event loop thread per
    fetcher. Only ``https`` URLs are accepted.

    Args:
        tls: An awscrt client context presenting the device's certificate with its token key
            (``keystore.token_tls_context`` or :func:`device_fetcher`).
        limits: Size and time bounds.
    """

    def __init__(
        self, *, tls: crt_io.ClientTlsContext, limits: FetchLimits = _DEFAULT_LIMITS
    ) -> None:
        from awscrt import io as crt_io  # noqa: PLC0415  # awscrt loads only with this fetcher

        self.limits = limits
        self._tls = tls
        self._elg = crt_io.EventLoopGroup(1)
        self._bootstrap = crt_io.ClientBootstrap(self._elg, crt_io.DefaultHostResolver(self._elg))

    def _fetch(self, url: str) -> Iterator[bytes]:
        return self.fetch_from(url, 0)

    def fetch_from(self, url: str, start: int) -> RangedBody:
        """GET ``url`` from byte ``start`` on, over mutual TLS.

        Raises:
            InvalidInput: The URL is not an https URL.
            DownloadHTTPError: An error or redirect status, or a mismatched 206.
            SlowRetrievalError: Connect, handshake, head or a read timed out.
            DownloadError: Any other transport failure (refused, TLS failure, cut).
        """
        from trustfleet.agent.updater._crtstream import CrtRequest, open_body  # noqa: PLC0415

        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise InvalidInput(
                f"{url} is not an https URL", hint="the repository is reached over mutual TLS"
            )
        request = CrtRequest(
            url=parts, start=start, tls=self._tls, bootstrap=self._bootstrap,
            user_agent=_USER_AGENT,
        )  # fmt: skip
        offset, chunks = open_body(request, self.limits)
        return RangedBody(chunks, start=offset)


def device_fetcher(
    settings: DeviceSettings, *, limits: FetchLimits = _DEFAULT_LIMITS
) -> MtlsFetcher:
    """An :class:`MtlsFetcher` with the device's LDevID (its IDevID before enrollment).

    Raises:
        Unavailable: awscrt cannot load the module, log in or find the key.
        Config: The PIN file is missing or unsafe.
    """
    from trustfleet.agent._tls import client_tls_context, token_key  # noqa: PLC0415

    cert = settings.path(settings.identity.ldevid)
    if not cert.is_file():
        cert = settings.path(settings.identity.idevid)
    tls = client_tls_context(settings, client_cert=cert, key=token_key(settings))
    return MtlsFetcher(tls=tls, limits=limits)
