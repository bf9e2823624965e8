"""Outbound HTTP with the safety rules every signal adapter shares.

- Only URLs built from endpoints in the operator's settings (callers pass ``endpoint + path``);
  https only, unless the host is listed in ``network.allowInsecureHttpHosts`` (local tests).
- The host is resolved before each request and refused if any address is loopback, link-local,
  private, shared (100.64/10), multicast or otherwise not globally routable, unless the host is
  listed in ``allowPrivateHosts`` or ``allowInsecureHttpHosts``. (Known gap: the connection makes
  its own DNS lookup after this check, so a DNS answer that changes between the two is not caught;
  an egress NetworkPolicy is the belt to these braces.)
- Redirects are never followed (a 3xx is an error: ``RedirectRefused``), so a provider cannot
  send us, with our token, to another host.
- Connect and read timeouts are bounded, the whole body must arrive within connect + 2 x read,
  and the body is streamed and cut off at ``maxResponseBytes``.
- Proxy settings and .netrc from the environment are ignored unless ``useEnvironmentProxies``.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import requests

from .carbon.base import ProviderError, Reason

Resolver = Callable[[str, int], list[str]]


def _default_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


def is_public_address(addr: str) -> bool:
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(ip.is_global) and not ip.is_multicast


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ProviderError(Reason.MALFORMED, f"response from {self.url} is not JSON: {exc}") from None


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After is delay-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


class SafeHttpClient:
    def __init__(
        self,
        network,  # settings.NetworkSettings
        *,
        session: requests.Session | None = None,
        resolver: Resolver = _default_resolver,
        use_environment_proxies: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.network = network
        self.session = session or requests.Session()
        self.session.trust_env = use_environment_proxies
        self.session.max_redirects = 0
        self._resolve = resolver
        self._monotonic = monotonic

    # -- policy -------------------------------------------------------------------------------
    def check_destination(self, url: str) -> None:
        """Raise ProviderError(UNSAFE_DESTINATION) if the URL may not be called."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        insecure_ok = host in self.network.allow_insecure_http_hosts
        private_ok = insecure_ok or host in self.network.allow_private_hosts
        if parts.scheme == "http" and not insecure_ok:
            raise ProviderError(Reason.UNSAFE_DESTINATION, f"plain http to {host} is not allowed (https only)")
        if parts.scheme not in ("http", "https") or not host:
            raise ProviderError(Reason.UNSAFE_DESTINATION, f"{url!r} is not an http(s) URL with a host")
        if parts.username or parts.password:
            raise ProviderError(Reason.UNSAFE_DESTINATION, "credentials in URLs are not allowed")
        if private_ok:
            return
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addrs = self._resolve(host, port)
        except OSError as exc:
            raise ProviderError(Reason.CONNECTION, f"cannot resolve {host}: {exc}") from None
        if not addrs:
            raise ProviderError(Reason.CONNECTION, f"{host} has no addresses")
        for a in addrs:
            if not is_public_address(a):
                raise ProviderError(
                    Reason.UNSAFE_DESTINATION,
                    f"{host} resolves to non-public address {a}; list the host in "
                    "network.allowPrivateHosts if this is intended",
                )

    # -- requests -----------------------------------------------------------------------------
    def get(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> HttpResponse:
        self.check_destination(url)
        connect_t = self.network.connect_timeout_seconds
        read_t = self.network.read_timeout_seconds
        cap = self.network.max_response_bytes
        deadline = self._monotonic() + connect_t + 2 * read_t
        try:
            resp = self.session.get(
                url,
                params=params,
                headers=dict(headers or {}),
                auth=auth,
                timeout=(connect_t, read_t),
                allow_redirects=False,
                stream=True,
            )
        except requests.exceptions.Timeout as exc:
            raise ProviderError(Reason.TIMEOUT, f"{_host(url)}: {type(exc).__name__}") from None
        except requests.exceptions.TooManyRedirects:
            raise ProviderError(Reason.REDIRECT_REFUSED, f"{_host(url)} redirected") from None
        except requests.exceptions.RequestException as exc:
            raise ProviderError(Reason.CONNECTION, f"{_host(url)}: {type(exc).__name__}") from None
        try:
            length = resp.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > cap:
                raise ProviderError(Reason.TOO_LARGE, f"{_host(url)} announced {length} bytes (> {cap})")
            chunks: list[bytes] = []
            total = 0
            try:
                for chunk in resp.iter_content(chunk_size=65536):
                    total += len(chunk)
                    if total > cap:
                        raise ProviderError(Reason.TOO_LARGE, f"{_host(url)} sent more than {cap} bytes")
                    if self._monotonic() > deadline:
                        raise ProviderError(Reason.TIMEOUT, f"{_host(url)} body took longer than {connect_t + 2 * read_t:g}s")
                    chunks.append(chunk)
            except requests.exceptions.RequestException as exc:
                reason = Reason.TIMEOUT if "timed out" in str(exc).lower() else Reason.CONNECTION
                raise ProviderError(reason, f"{_host(url)}: {type(exc).__name__} while reading") from None
            return HttpResponse(resp.status_code, dict(resp.headers), b"".join(chunks), url)
        finally:
            resp.close()


def _host(url: str) -> str:
    return urlsplit(url).hostname or url


def check_status(resp: HttpResponse, what: str, now: datetime | None = None) -> None:
    """Map a non-2xx answer to a typed ProviderError."""
    s = resp.status
    if 200 <= s < 300:
        return
    snippet = resp.body[:200].decode("utf-8", "replace").replace("\n", " ")
    if 300 <= s < 400:
        loc = resp.headers.get("Location", "?")
        raise ProviderError(Reason.REDIRECT_REFUSED, f"{what}: HTTP {s} redirect to {loc} refused")
    if s in (401, 403):
        raise ProviderError(Reason.UNAUTHORIZED, f"{what}: HTTP {s} {snippet}")
    if s == 429:
        ra = parse_retry_after(resp.headers.get("Retry-After"), now)
        raise ProviderError(
            Reason.RATE_LIMITED,
            f"{what}: HTTP 429" + (f", Retry-After {ra:.0f}s" if ra is not None else ""),
            retry_after=ra,
        )
    raise ProviderError(Reason.HTTP_ERROR, f"{what}: HTTP {s} {snippet}")
