"""Fetch feed bytes politely and safely; the only module that talks HTTP (httpx).

A fetch never raises for the outside world's failures: every timeout, refusal, oversize body or
HTTP error comes back as a FetchResult with `error` set, so one broken source is a recorded
fact about that source and never an exception that stops a polling round.

Safety (DESIGN.md §8): feed URLs come from operators but redirects come from strangers, so
every hop is checked — http(s) only, and the host is resolved here and refused when any of its
addresses is loopback/private/link-local/metadata (unless the source sets allow_private). The
connection is then pinned to the checked address (Host header and TLS SNI keep the name), so a
DNS answer that changes between check and connect (rebinding) cannot reach an internal host.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import TracebackType
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

import httpx

from daemon.config import Settings
from daemon.models import FetchResult

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_METADATA = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class _Refused(Exception):
    """Internal: the guard said no; turned into FetchResult(error="refused: ...")."""


class _TooLarge(Exception):
    pass


def address_blocked(addr: IPAddress) -> bool:
    """True for addresses a feed URL must not reach: anything not globally routable.

    `is_global` already excludes private, loopback, link-local, CGNAT, documentation and
    reserved ranges; the explicit checks keep multicast and the cloud metadata endpoints out
    even where the stdlib tables call them global.
    """
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return address_blocked(addr.ipv4_mapped)
    return (
        addr in _METADATA
        or addr.is_loopback
        or addr.is_private
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
        or not addr.is_global
    )


@dataclass
class _HostGate:
    sem: asyncio.Semaphore
    users: int = 0


class _RateLimit:
    """Minimum spacing between requests to one host family (SEC asks for at most 10/s)."""

    def __init__(self, rate_per_s: float) -> None:
        self._interval = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if self._interval <= 0:
            return
        async with self._lock:
            loop = asyncio.get_running_loop()
            now = loop.time()
            if self._next > now:
                await asyncio.sleep(self._next - now)
                now = loop.time()
            self._next = now + self._interval


class Fetcher:
    """One shared AsyncClient with global and per-host limits; use as an async context manager."""

    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self._client = httpx.AsyncClient(
            transport=transport,
            follow_redirects=False,  # each hop must pass the guard, so we follow ourselves
            trust_env=False,  # an env proxy would resolve names where the guard cannot see
            timeout=httpx.Timeout(settings.fetch_timeout),
            headers={"User-Agent": settings.user_agent, "Accept-Encoding": "gzip, deflate"},
        )
        self._global = asyncio.Semaphore(max(1, settings.fetch_concurrency))
        self._hosts: dict[str, _HostGate] = {}
        self._sec = _RateLimit(settings.sec_rate_per_s)

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        allow_private: bool = False,
    ) -> FetchResult:
        started = time.monotonic()
        async with self._global:
            try:
                async with asyncio.timeout(self.settings.fetch_timeout):
                    result = await self._follow(url, etag, last_modified, allow_private)
            except TimeoutError:
                result = FetchResult(url=url, status=0, error=f"timeout after {self.settings.fetch_timeout:g}s")
            except _Refused as exc:
                result = FetchResult(url=url, status=0, error=f"refused: {exc}")
            except httpx.HTTPError as exc:
                result = FetchResult(url=url, status=0, error=_describe(exc))
            except OSError as exc:  # DNS failures from getaddrinfo
                result = FetchResult(url=url, status=0, error=f"network error: {exc}")
        return _with_elapsed(result, time.monotonic() - started)

    async def _follow(self, url: str, etag: str | None, last_modified: str | None, allow_private: bool) -> FetchResult:
        current = url
        hops = 0
        while True:
            hop = await self._one(url, current, etag, last_modified, allow_private)
            if isinstance(hop, FetchResult):
                return hop
            hops += 1
            if hops > self.settings.fetch_max_redirects:
                return FetchResult(
                    url=url,
                    status=0,
                    final_url=current,
                    error=f"too many redirects (more than {self.settings.fetch_max_redirects})",
                )
            current = hop

    async def _one(
        self, url: str, current: str, etag: str | None, last_modified: str | None, allow_private: bool
    ) -> FetchResult | str:
        """One hop: a FetchResult when done, or the next URL when redirected."""
        parts = urlsplit(current)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise _Refused(f"scheme {scheme or '(none)'!r} not allowed")
        host = (parts.hostname or "").lower()
        if not host:
            raise _Refused("URL has no host")
        port = parts.port or (443 if scheme == "https" else 80)
        addr = await _checked_address(host, port, allow_private)

        headers: dict[str, str] = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        target, extensions = _pin(parts, host, addr, headers)

        gate = self._hosts.get(host)
        if gate is None:
            gate = self._hosts[host] = _HostGate(asyncio.Semaphore(max(1, self.settings.per_host_concurrency)))
        gate.users += 1
        try:
            async with gate.sem:
                if host == "sec.gov" or host.endswith(".sec.gov"):
                    await self._sec.wait()
                request = self._client.build_request("GET", target, headers=headers, extensions=extensions)
                response = await self._client.send(request, stream=True)
                try:
                    return await self._read(url, current, response)
                finally:
                    await response.aclose()
        finally:
            gate.users -= 1
            if gate.users == 0:
                self._hosts.pop(host, None)

    async def _read(self, url: str, current: str, response: httpx.Response) -> FetchResult | str:
        status = response.status_code
        h = response.headers
        if status in _REDIRECTS and h.get("location"):
            return urljoin(current, h["location"])

        def result(body: bytes = b"", error: str | None = None) -> FetchResult:
            return FetchResult(
                url=url,
                status=status,
                body=body,
                etag=h.get("etag"),
                last_modified=h.get("last-modified"),
                content_type=h.get("content-type", ""),
                final_url=current,
                error=error,
            )

        if status == 304:
            return result()
        if not 200 <= status < 300:
            return result(error=f"HTTP {status} {response.reason_phrase}".strip())
        cap = self.settings.fetch_max_bytes
        declared = h.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            return result(error=f"body exceeds {cap} bytes")
        chunks: list[bytes] = []
        size = 0
        # aiter_bytes yields decoded bytes, so the cap also stops gzip bombs.
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > cap:
                return result(error=f"body exceeds {cap} bytes")
            chunks.append(chunk)
        return result(body=b"".join(chunks))


async def _checked_address(host: str, port: int, allow_private: bool) -> IPAddress:
    """Resolve `host` and return the address to connect to, or raise _Refused.

    All resolved addresses must pass, not just the first: a hostile DNS answer can mix a public
    and a private address and let the OS pick.
    """
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        addrs = [literal]
    else:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addrs = []
        for info in infos:
            ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if ip not in addrs:
                addrs.append(ip)
        if not addrs:
            raise OSError(f"no address for {host}")
    if not allow_private:
        for ip in addrs:
            if address_blocked(ip):
                raise _Refused(f"{host} resolves to non-public address {ip}")
    return addrs[0]


def _pin(parts: SplitResult, host: str, addr: IPAddress, headers: dict[str, str]) -> tuple[str, Mapping[str, object]]:
    """Point the request at the checked address while keeping the name for Host and TLS."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return urlunsplit(parts), {}  # already a literal: nothing to pin
    except ValueError:
        pass
    ip_text = f"[{addr}]" if addr.version == 6 else str(addr)
    netloc = ip_text if parts.port is None else f"{ip_text}:{parts.port}"
    headers["Host"] = host if parts.port is None else f"{host}:{parts.port}"
    extensions: dict[str, object] = {}
    if parts.scheme.lower() == "https":
        extensions["sni_hostname"] = host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")), extensions


def _describe(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timeout ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        return f"connection failed: {exc}" if str(exc) else "connection failed"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _with_elapsed(result: FetchResult, elapsed: float) -> FetchResult:
    return replace(result, elapsed_s=round(elapsed, 4))


def fetch_once(
    settings: Settings,
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    allow_private: bool = False,
) -> FetchResult:
    """Blocking single fetch for the CLI (`keynews fetch URL`); the daemon uses Fetcher."""

    async def run() -> FetchResult:
        async with Fetcher(settings) as fetcher:
            return await fetcher.fetch(url, etag=etag, last_modified=last_modified, allow_private=allow_private)

    return asyncio.run(run())
