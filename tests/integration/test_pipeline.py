"""Feed -> store through the real pipeline: HTTP on 127.0.0.1, real SQLite, the real rule engine."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from feedserver import FeedServer
from workspace import NOW, make_workspace, rss

from daemon.ingest.pipeline import Pipeline
from daemon.service import App
from daemon.store.tables import ItemRow, MatchRow

KC_FEED = rss(
    [
        (
            "Kingsoft Cloud Reports Third Quarter 2026 Unaudited Financial Results",
            "https://wire.example.com/kc-q3?utm_source=rss",
            "Kingsoft Cloud Holdings Limited (NASDAQ: KC) today announced its results.",
        ),
        (
            "Acme Widgets to acquire Bolt Corp for $2 billion",
            "https://wire.example.com/acme-bolt",
            "Acme Widgets Inc. (NYSE: ACME) signed a merger agreement.",
        ),
        ("Weather is nice today", "https://wire.example.com/weather", "Nothing about companies."),
    ]
)


def _sources(server: FeedServer, *paths: str) -> str:
    lines = ["defaults: {every: 10m, jitter: 0s}", "sources:"]
    for p in paths:
        sid = p.strip("/").replace(".", "-").replace("/", "-")
        lines += [f"  - id: {sid}", f"    url: {server.url(p)}", "    allow_private: true"]
    return "\n".join(lines) + "\n"


def _poll(app: App, now=NOW, force: bool = False):  # type: ignore[no-untyped-def]
    pipeline = Pipeline(app.settings, app.repo, app.watchlist, app.specs)
    pipeline.sync(now)
    return asyncio.run(pipeline.poll_due(now, app.rules, force=force))


def test_items_are_stored_once_and_second_poll_is_answered_304(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.add("/kc.xml", KC_FEED, content_type="application/rss+xml")
    app = App.load(make_workspace(tmp_path, _sources(feed_server, "/kc.xml")))

    first = _poll(app)
    assert first.new_items == 3
    assert app.repo.count(ItemRow) == 3
    matched = {i.title: sorted({(m.rule_id, m.ticker) for m in ms}) for i, ms in first.sources[0].new_items}
    assert matched["Kingsoft Cloud Reports Third Quarter 2026 Unaudited Financial Results"] == [("results", "KC")]
    assert matched["Acme Widgets to acquire Bolt Corp for $2 billion"] == [("deals", "ACME")]
    assert matched["Weather is nice today"] == []

    second = _poll(app, NOW + timedelta(minutes=11))
    assert second.sources[0].not_modified
    assert second.new_items == 0
    assert app.repo.count(ItemRow) == 3
    assert app.repo.count(MatchRow) == 2
    cond = [h for p, h in feed_server.requests if p == "/kc.xml"][-1]
    assert {k.lower(): v for k, v in cond.items()}.get("if-none-match")


def test_same_items_without_conditional_get_are_not_stored_twice(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.add("/kc.xml", KC_FEED, content_type="application/rss+xml", etag=False)
    app = App.load(make_workspace(tmp_path, _sources(feed_server, "/kc.xml")))
    assert _poll(app).new_items == 3
    again = _poll(app, NOW + timedelta(minutes=11))
    assert again.sources[0].status == 200
    assert again.new_items == 0
    assert app.repo.count(ItemRow) == 3


def test_broken_sources_are_recorded_and_the_others_are_stored(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.add("/good.xml", KC_FEED, content_type="application/rss+xml")
    feed_server.add("/malformed.xml", b"<rss><channel><item><title>oops</titl", content_type="application/rss+xml")
    feed_server.fail("/500.xml", 500)
    feed_server.slow("/slow.xml", 5)
    settings = make_workspace(
        tmp_path, _sources(feed_server, "/good.xml", "/malformed.xml", "/500.xml", "/slow.xml"), fetch_timeout=0.5
    )
    app = App.load(settings)
    report = _poll(app)
    by_key = {s.key: s for s in report.sources}
    assert by_key["good-xml"].error is None and len(by_key["good-xml"].new_items) == 3
    assert "500" in (by_key["500-xml"].error or "")
    assert by_key["malformed-xml"].error
    assert by_key["slow-xml"].error
    rows = {s.id: s for s in app.repo.list_sources()}
    for bad in ("malformed-xml", "500-xml", "slow-xml"):
        assert rows[bad].failures == 1
        assert rows[bad].last_error
        # backed off: the next poll of a failed source is later than a healthy one's
        assert rows[bad].next_due_at > rows["good-xml"].next_due_at
    assert rows["good-xml"].failures == 0
    assert app.repo.count(ItemRow) == 3

    # a second failure doubles the wait again; the healthy source is untouched
    later = NOW + timedelta(hours=1)
    _poll(app, later)
    rows2 = {s.id: s for s in app.repo.list_sources()}
    assert rows2["500-xml"].failures == 2
    assert rows2["500-xml"].next_due_at - later >= timedelta(minutes=40)


def test_a_source_that_recovers_is_healthy_again(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.fail("/flaky.xml", 503)
    app = App.load(make_workspace(tmp_path, _sources(feed_server, "/flaky.xml")))
    assert _poll(app).errors
    feed_server.add("/flaky.xml", KC_FEED, content_type="application/rss+xml")
    report = _poll(app, NOW + timedelta(hours=2))
    assert not report.errors and report.new_items == 3
    assert app.repo.list_sources()[0].failures == 0


def test_same_story_from_two_sources_is_one_digest_entry_also_reported_by(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    from daemon.mail.digest import DigestService

    wire_a = rss([("Acme Widgets to acquire Bolt Corp for $2 billion", "https://a.example.com/1", "Deal.")])
    wire_b = rss([("Acme Widgets to acquire Bolt Corp in $2 billion deal - Reuters", "https://b.example.com/9", "x")])
    feed_server.add("/a.xml", wire_a)
    feed_server.add("/b.xml", wire_b)
    sources = _sources(feed_server, "/a.xml", "/b.xml").replace("  - id: b-xml\n", "  - id: b-xml\n    label: Wire B\n")
    app = App.load(make_workspace(tmp_path, sources.replace("  - id: a-xml\n", "  - id: a-xml\n    label: Wire A\n")))
    report = _poll(app)
    assert report.new_items == 2
    rows = app.repo.items_since(NOW - timedelta(days=1))
    assert len(rows) == 2
    app.repo.add_subscriber("ann@example.com", ["ACME"], now=NOW - timedelta(days=1))
    service = DigestService(app.settings, app.repo, app.watchlist)
    sub = app.repo.subscribers(email="ann@example.com")[0]
    matches = service.builder.pending(sub, NOW, "digest")
    built = service.builder.build(sub, matches, kind="digest", window_key="w", now=NOW)
    (section,) = built.digest.sections
    (entry,) = section.entries  # one story, not two
    assert {entry.source, *entry.also_reported_by} == {"Wire A", "Wire B"}
    assert len(built.match_ids) == 2  # both matches are accounted for, so neither comes back tomorrow
