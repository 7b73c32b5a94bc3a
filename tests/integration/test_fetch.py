"""Fetcher against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
from dataclasses import replace

import pytest
from feedserver import FeedServer

from daemon.config import Settings
from daemon.ingest.fetch import Fetcher, address_blocked, fetch_once
from daemon.models import FetchResult

FEED = b"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title></channel></rss>"
SETTINGS = Settings(fetch_timeout=5.0, user_agent="keynews-test/1.0 (ops@example.com)")


def run_fetch(settings: Settings, url: str, **kw: object) -> FetchResult:
    async def go() -> FetchResult:
        async with Fetcher(settings) as f:
            return await f.fetch(url, **kw)  # type: ignore[arg-type]

    return asyncio.run(go())


def test_200_then_304_with_stored_validators(feed_server: FeedServer) -> None:
    feed_server.add("/feed.xml", FEED)
    first = run_fetch(SETTINGS, feed_server.url("/feed.xml"), allow_private=True)
    assert first.ok and first.status == 200
    assert first.body == FEED
    assert first.etag and first.last_modified
    assert first.content_type.startswith("application/rss+xml")
    assert first.final_url == feed_server.url("/feed.xml")

    second = run_fetch(
        SETTINGS,
        feed_server.url("/feed.xml"),
        etag=first.etag,
        last_modified=first.last_modified,
        allow_private=True,
    )
    assert second.status == 304 and second.not_modified and second.body == b""
    assert second.error is None
    _, headers = feed_server.requests[-1]
    assert headers["if-none-match"] == first.etag
    assert headers["if-modified-since"] == first.last_modified
    assert headers["user-agent"] == "keynews-test/1.0 (ops@example.com)"
    assert "gzip" in headers["accept-encoding"]


def test_if_modified_since_alone_gives_304(feed_server: FeedServer) -> None:
    feed_server.add("/f", FEED)
    lm = run_fetch(SETTINGS, feed_server.url("/f"), allow_private=True).last_modified
    again = run_fetch(SETTINGS, feed_server.url("/f"), last_modified=lm, allow_private=True)
    assert again.status == 304


def test_gzip_body_is_decoded(feed_server: FeedServer) -> None:
    feed_server.add("/gz", gzip.compress(FEED), headers={"Content-Encoding": "gzip"})
    res = run_fetch(SETTINGS, feed_server.url("/gz"), allow_private=True)
    assert res.ok and res.body == FEED


@pytest.mark.parametrize("status", [500, 503, 404, 403])
def test_http_errors_are_results_not_exceptions(feed_server: FeedServer, status: int) -> None:
    feed_server.fail("/bad", status)
    res = run_fetch(SETTINGS, feed_server.url("/bad"), allow_private=True)
    assert res.status == status
    assert not res.ok
    assert res.error is not None and res.error.startswith(f"HTTP {status}")


def test_slow_server_times_out(feed_server: FeedServer) -> None:
    feed_server.add("/slow", FEED)
    feed_server.slow("/slow", 3.0)
    res = run_fetch(replace(SETTINGS, fetch_timeout=0.3), feed_server.url("/slow"), allow_private=True)
    assert res.status == 0
    assert res.error is not None and "timeout" in res.error


def test_body_cap(feed_server: FeedServer) -> None:
    big = b"<rss>" + b"x" * 50_000 + b"</rss>"
    feed_server.add("/big", big)
    res = run_fetch(replace(SETTINGS, fetch_max_bytes=10_000), feed_server.url("/big"), allow_private=True)
    assert res.error == "body exceeds 10000 bytes"
    assert res.body == b""
    ok = run_fetch(replace(SETTINGS, fetch_max_bytes=len(big)), feed_server.url("/big"), allow_private=True)
    assert ok.ok and ok.body == big


def test_body_cap_applies_to_decoded_gzip(feed_server: FeedServer) -> None:
    bomb = gzip.compress(b"<rss>" + b" " * 200_000 + b"</rss>")
    assert len(bomb) < 10_000
    feed_server.add("/bomb", bomb, headers={"Content-Encoding": "gzip"})
    res = run_fetch(replace(SETTINGS, fetch_max_bytes=10_000), feed_server.url("/bomb"), allow_private=True)
    assert res.error == "body exceeds 10000 bytes"


def test_redirects_followed_up_to_the_cap(feed_server: FeedServer) -> None:
    feed_server.add("/final", FEED)
    feed_server.redirect("/r1", "/r2")
    feed_server.redirect("/r2", feed_server.url("/final"))
    res = run_fetch(SETTINGS, feed_server.url("/r1"), allow_private=True)
    assert res.ok and res.body == FEED
    assert res.final_url == feed_server.url("/final")
    assert res.url == feed_server.url("/r1")

    capped = run_fetch(replace(SETTINGS, fetch_max_redirects=1), feed_server.url("/r1"), allow_private=True)
    assert capped.status == 0
    assert capped.error is not None and capped.error.startswith("too many redirects")
    assert feed_server.hits("/final") == 1  # the capped fetch never reached it


def test_redirect_loop_stops(feed_server: FeedServer) -> None:
    feed_server.redirect("/a", "/b")
    feed_server.redirect("/b", "/a")
    res = run_fetch(SETTINGS, feed_server.url("/a"), allow_private=True)
    assert res.error is not None and "too many redirects" in res.error
    assert feed_server.hits("/a") + feed_server.hits("/b") == SETTINGS.fetch_max_redirects + 1


def test_private_address_refused_without_allow_private(feed_server: FeedServer) -> None:
    feed_server.add("/feed.xml", FEED)
    res = run_fetch(SETTINGS, feed_server.url("/feed.xml"))
    assert res.status == 0
    assert res.error is not None and res.error.startswith("refused:")
    assert feed_server.hits("/feed.xml") == 0  # refused before connecting


def test_localhost_name_refused_after_resolution(feed_server: FeedServer) -> None:
    feed_server.add("/feed.xml", FEED)
    res = run_fetch(SETTINGS, f"http://localhost:{feed_server.port}/feed.xml")
    assert res.error is not None and res.error.startswith("refused:")
    allowed = run_fetch(SETTINGS, f"http://localhost:{feed_server.port}/feed.xml", allow_private=True)
    assert allowed.ok and allowed.body == FEED
    # the connection was pinned to the checked address but the Host header kept the name
    assert feed_server.requests[-1][1]["host"] == f"localhost:{feed_server.port}"


def test_redirect_hop_is_checked_too(feed_server: FeedServer) -> None:
    """Each hop passes the guard: a feed cannot bounce the fetcher to another scheme."""
    feed_server.redirect("/to-ftp", "ftp://example.com/feed")
    res = run_fetch(SETTINGS, feed_server.url("/to-ftp"), allow_private=True)
    assert res.error is not None and res.error.startswith("refused: scheme 'ftp'")
    feed_server.redirect("/to-file", "file:///etc/passwd")
    res2 = run_fetch(SETTINGS, feed_server.url("/to-file"), allow_private=True)
    assert res2.error is not None and res2.error.startswith("refused: scheme 'file'")


@pytest.mark.parametrize("url", ["ftp://example.com/feed.xml", "file:///etc/passwd", "gopher://x/"])
def test_non_http_scheme_refused(url: str) -> None:
    res = run_fetch(SETTINGS, url, allow_private=True)
    assert res.status == 0
    assert res.error is not None and res.error.startswith("refused: scheme")


@pytest.mark.parametrize(
    "addr,blocked",
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("192.168.0.1", True),
        ("172.16.5.4", True),
        ("169.254.169.254", True),
        ("100.64.0.1", True),
        ("0.0.0.0", True),
        ("224.0.0.1", True),
        ("::1", True),
        ("fd00:ec2::254", True),
        ("fe80::1", True),
        ("::ffff:127.0.0.1", True),
        ("8.8.8.8", False),
        ("2606:4700:4700::1111", False),
    ],
)
def test_address_guard(addr: str, blocked: bool) -> None:
    assert address_blocked(ipaddress.ip_address(addr)) is blocked


def test_refused_connection_is_a_result() -> None:
    with FeedServer() as server:
        port = server.port
    res = run_fetch(SETTINGS, f"http://127.0.0.1:{port}/gone", allow_private=True)
    assert res.status == 0 and res.error is not None and not res.ok


def test_per_host_concurrency_limits_parallel_requests(feed_server: FeedServer) -> None:
    """With per_host_concurrency=1, 4 slow requests to one host never overlap."""
    feed_server.add("/s", FEED)
    feed_server.slow("/s", 0.1)

    async def go(per_host: int) -> list[FetchResult]:
        settings = replace(SETTINGS, per_host_concurrency=per_host, fetch_concurrency=8)
        async with Fetcher(settings) as f:
            return list(await asyncio.gather(*(f.fetch(feed_server.url("/s"), allow_private=True) for _ in range(4))))

    assert all(r.ok for r in asyncio.run(go(1)))
    assert feed_server.hits("/s") == 4
    assert feed_server.max_in_flight == 1
    assert all(r.ok for r in asyncio.run(go(4)))
    assert feed_server.max_in_flight > 1  # the limit, not the server, serialized the first round


def test_fetch_once_sync(feed_server: FeedServer) -> None:
    feed_server.add("/x", FEED)
    res = fetch_once(SETTINGS, feed_server.url("/x"), allow_private=True)
    assert res.ok and res.body == FEED and res.elapsed_s >= 0


def test_sec_rate_limit_spaces_requests() -> None:
    """sec.gov hosts share one limiter; at 20/s five calls span at least four intervals."""
    from daemon.ingest.fetch import _RateLimit

    async def go() -> float:
        limit = _RateLimit(20.0)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.gather(*(limit.wait() for _ in range(5)))
        return loop.time() - t0

    assert asyncio.run(go()) >= 4 * 0.05 * 0.95  # lower bound only: sleeps never end early
