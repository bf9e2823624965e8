"""Outbound HTTP with the safety rules every signal adapter shares.

- Only URLs built from endpoints in the operator's settings (callers pass ``endpoint + path``);
  https only, unless the host is listed in ``network.allowInsecureHttpHosts`` (local tests).
- The host is resolved before each request and refused if any address is loopback, link-local,
  private, shared (100.64/10), multicast or otherwise not globally routable, unless the host is
  listed in ``allowPrivateHosts`` or ``allowInsecureHttpHosts``. The connection makes its own DNS
  lookup, so the address it actually reached is checked again on the connected socket, before TLS
  and before a byte of the request is sent (``PeerCheckingAdapter``): a DNS answer that changes
  between the two (DNS rebinding) is refused as ``UnsafeDestination``. (With
  ``useEnvironmentProxies`` the peer is the proxy and this second check is skipped.)
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
import requests.adapters
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

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


class UnsafePeer(ConnectionError):
    """The connected socket's peer is an address the policy refuses (raised before any byte is sent)."""


def _peer_checked(conn_cls, allowed: Callable[[str, str], bool]):
    class Checked(conn_cls):
        def _new_conn(self):
            sock = super()._new_conn()
            try:
                peer = sock.getpeername()[0]
            except OSError:
                sock.close()
                raise
            if not allowed(self.host, peer):
                sock.close()
                raise UnsafePeer(f"{self.host} connected to non-public address {peer}")
            return sock

    Checked.__name__ = f"PeerChecked{conn_cls.__name__}"
    return Checked


class PeerCheckingAdapter(requests.adapters.HTTPAdapter):
    """A requests adapter whose connections check the address they actually reached
    (``allowed(host, peer_ip)``) right after the TCP connect, before TLS or the request."""

    def __init__(self, allowed: Callable[[str, str], bool], **kw) -> None:
        self._allowed = allowed
        super().__init__(**kw)

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        allowed = self._allowed
        http_pool = type("PeerCheckedHTTPPool", (HTTPConnectionPool,),
                         {"ConnectionCls": _peer_checked(HTTPConnectionPool.ConnectionCls, allowed)})
        https_pool = type("PeerCheckedHTTPSPool", (HTTPSConnectionPool,),
                          {"ConnectionCls": _peer_checked(HTTPSConnectionPool.ConnectionCls, allowed)})
        self.poolmanager.pool_classes_by_scheme = {"http": http_pool, "https": https_pool}

    def __getstate__(self):  # pragma: no cover - requests pickles adapters only when asked to
        raise TypeError("PeerCheckingAdapter is not picklable")


def peer_policy(network) -> Callable[[str, str], bool]:
    """``allowed(host, peer_ip)`` for ``network`` (settings.NetworkSettings): hosts listed in
    allowPrivateHosts / allowInsecureHttpHosts may be anywhere; every other peer must be public."""

    def allowed(host: str, peer: str) -> bool:
        if host in network.allow_insecure_http_hosts or host in network.allow_private_hosts:
            return True
        return is_public_address(peer)

    return allowed


def mount_peer_check(session: requests.Session, network) -> requests.Session:
    """Make every connection of ``session`` re-check its peer address (see the module docstring)."""
    adapter = PeerCheckingAdapter(peer_policy(network))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


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
        if not use_environment_proxies:
            mount_peer_check(self.session, network)
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
        except requests.exceptions.ConnectionError as exc:
            unsafe = find_unsafe_peer(exc)
            if unsafe is not None:
                raise ProviderError(Reason.UNSAFE_DESTINATION, f"{unsafe} (DNS answer changed after the check?); "
                                    "refused before sending the request") from None
            raise ProviderError(Reason.CONNECTION, f"{_host(url)}: {type(exc).__name__}") from None
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


def find_unsafe_peer(exc: BaseException) -> UnsafePeer | None:
    """The UnsafePeer at the root of a requests/urllib3 connection error, if that is what it was."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, UnsafePeer):
            return e
        stack.extend([e.__cause__, e.__context__, getattr(e, "reason", None)])
        stack.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
    return None


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
