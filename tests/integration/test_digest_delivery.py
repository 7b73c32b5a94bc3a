"""Digest windows and the outbox against a real aiosmtpd server and a real SQLite file."""

from __future__ import annotations

import email
from dataclasses import replace
from datetime import timedelta
from email import policy
from pathlib import Path

import pytest
from smtpserver import SmtpSink
from workspace import NOW, make_workspace

from daemon.mail.digest import DigestService, due_window, in_quiet_hours
from daemon.mail.send import Sender
from daemon.models import Explanation, Item, Match, Severity
from daemon.service import App
from daemon.store.repo import Repo

SOURCES = "sources: []\n"


def seed(repo: Repo, n: int = 3, *, ticker: str = "KC", severity: Severity = Severity.HIGH, offset: int = 0) -> None:
    for i in range(offset, offset + n):
        item = Item(
            uid=f"u{ticker}{i}",
            source_id="wire",
            source_label="Test Wire",
            url=f"https://wire.example.com/{ticker}/{i}",
            title=f"{ticker} story {i}: financial results beat",
            summary="Revenue rose 12% to $2.1 billion.",
            published_at=NOW - timedelta(hours=2),
            tickers=(ticker,),
        )
        match = Match(
            rule_id="results",
            rule_title="Quarterly or annual results",
            category="earnings",
            severity=severity,
            ticker=ticker,
            explanations=(Explanation("results", "headline", "financial results", 12, 29),),
        )
        repo.store_item(item, cluster_id=item.uid, matches=[match], now=NOW - timedelta(hours=1))


@pytest.fixture
def app(tmp_path: Path, smtp_sink: SmtpSink) -> App:
    settings = make_workspace(tmp_path, SOURCES, smtp_host="127.0.0.1", smtp_port=smtp_sink.port, smtp_timeout=3.0)
    return App.load(settings)


def _parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def test_digest_arrives_with_headers_parts_and_why(app: App, smtp_sink: SmtpSink) -> None:
    seed(app.repo, 3)
    app.repo.add_subscriber("ann@example.com", ["KC"], now=NOW - timedelta(days=1))
    closed = DigestService(app.settings, app.repo, app.watchlist).close_due(NOW, force_window="manual:1")
    assert closed.queued == 1
    report = Sender(app.settings, app.repo).send_due()
    assert report.sent == 1
    ((_frm, rcpts, raw),) = smtp_sink.messages
    assert rcpts == ["ann@example.com"]
    msg = _parse(raw)
    assert msg.get_content_type() == "multipart/alternative"
    assert "KC" in msg["Subject"] and "results" in msg["Subject"]
    for header in ("Message-ID", "Date", "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post"):
        assert msg[header], header
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    for part in (text, html):
        assert "KC story 0: financial results beat" in part
        assert "Test Wire" in part
        assert "https://wire.example.com/KC/0" in part
        assert "Quarterly or annual results" in part


def test_a_window_is_closed_once_and_stories_are_not_repeated(app: App, smtp_sink: SmtpSink) -> None:
    seed(app.repo, 2)
    app.repo.add_subscriber("bob@example.com", ["KC"], now=NOW - timedelta(days=1), send_time="07:00")
    service = DigestService(app.settings, app.repo, app.watchlist)
    assert service.close_due(NOW).queued == 1  # 15:00 UTC is past 07:00: daily window due
    assert service.close_due(NOW + timedelta(minutes=5)).queued == 0  # same day: already closed
    Sender(app.settings, app.repo).send_due()
    seed(app.repo, 1, offset=10)
    next_day = NOW + timedelta(days=1)
    assert service.close_due(next_day).queued == 1
    Sender(app.settings, app.repo).send_due()
    assert len(smtp_sink.messages) == 2
    second = _parse(smtp_sink.messages[1][2]).get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "KC story 10" in second
    assert "KC story 0" not in second  # already sent yesterday


def test_smtp_outage_delays_but_loses_nothing(app: App, smtp_sink: SmtpSink) -> None:
    seed(app.repo, 2)
    for i in range(5):
        app.repo.add_subscriber(f"s{i}@example.com", ["KC"], now=NOW - timedelta(days=1))
    DigestService(app.settings, app.repo, app.watchlist).close_due(NOW, force_window="manual:1")
    smtp_sink.stop()
    clock = [NOW]
    sender = Sender(app.settings, app.repo, clock=lambda: clock[0])
    down = sender.send_due()
    assert down.sent == 0 and down.retried == 5
    assert app.repo.outbox_counts() == {"queued": 5}
    smtp_sink.start()
    assert sender.send_due().sent == 0  # not due yet: backing off
    clock[0] = NOW + timedelta(hours=3)
    up = sender.send_due()
    assert up.sent == 5
    assert sorted(r[0] for _f, r, _raw in smtp_sink.messages) == [f"s{i}@example.com" for i in range(5)]
    assert app.repo.outbox_counts() == {"sent": 5}


def test_temporary_smtp_refusal_is_retried(app: App, smtp_sink: SmtpSink) -> None:
    seed(app.repo, 1)
    app.repo.add_subscriber("tmp@example.com", ["KC"], now=NOW - timedelta(days=1))
    DigestService(app.settings, app.repo, app.watchlist).close_due(NOW, force_window="manual:1")
    smtp_sink.fail_next(1, code=451)
    clock = [NOW]
    sender = Sender(app.settings, app.repo, clock=lambda: clock[0])
    assert sender.send_due().retried == 1
    clock[0] = NOW + timedelta(hours=3)
    assert sender.send_due().sent == 1
    assert len(smtp_sink.messages) == 1


def test_address_that_keeps_bouncing_is_marked_and_skipped(app: App, smtp_sink: SmtpSink) -> None:
    app.repo.add_subscriber("gone@example.com", ["KC"], now=NOW - timedelta(days=1))
    smtp_sink.reject_rcpt("gone@example.com", code=550)
    service = DigestService(app.settings, app.repo, app.watchlist)
    clock = [NOW]
    sender = Sender(app.settings, app.repo, clock=lambda: clock[0])
    for day in range(3):
        seed(app.repo, 1, offset=day * 10)
        clock[0] = NOW + timedelta(days=day)
        service.close_due(clock[0], force_window=f"manual:{day}")
        rep = sender.send_due()
        assert rep.failed == 1
    assert app.repo.subscribers(email="gone@example.com")[0].status == "bounced"
    seed(app.repo, 1, offset=99)
    assert service.close_due(NOW + timedelta(days=4), force_window="manual:9").queued == 0


def test_critical_match_goes_out_at_once_as_an_alert_outside_quiet_hours(app: App, smtp_sink: SmtpSink) -> None:
    app.repo.add_subscriber(
        "cat@example.com",
        ["KC"],
        now=NOW - timedelta(days=1),
        frequency="weekly",
        quiet_start="22:00",
        quiet_end="07:00",
        tz="UTC",
    )
    seed(app.repo, 1, severity=Severity.CRITICAL)
    service = DigestService(app.settings, app.repo, app.watchlist)
    quiet_night = NOW.replace(hour=23)
    assert service.close_due(quiet_night).alerts == 0
    morning = NOW.replace(hour=7, minute=30) + timedelta(days=1)
    assert service.close_due(morning).alerts == 1
    assert service.close_due(morning + timedelta(minutes=1)).alerts == 0
    Sender(app.settings, app.repo).send_due()
    ((_f, _r, raw),) = smtp_sink.messages
    assert _parse(raw)["Subject"].startswith("Alert")


def test_nothing_new_sends_nothing_or_a_note_as_chosen(app: App, smtp_sink: SmtpSink) -> None:
    app.repo.add_subscriber("skip@example.com", ["KC"], now=NOW - timedelta(days=1))
    app.repo.add_subscriber("note@example.com", ["KC"], now=NOW - timedelta(days=1), nothing_new="note")
    report = DigestService(app.settings, app.repo, app.watchlist).close_due(NOW)
    assert report.skipped == 1 and report.queued == 1
    Sender(app.settings, app.repo).send_due()
    assert [r for _f, r, _raw in smtp_sink.messages] == [["note@example.com"]]


def test_subscriber_preferences_filter_categories_and_severity(app: App, smtp_sink: SmtpSink) -> None:
    seed(app.repo, 1, severity=Severity.LOW)
    seed(app.repo, 1, severity=Severity.HIGH, offset=5)
    app.repo.add_subscriber("picky@example.com", ["KC"], now=NOW - timedelta(days=1), min_severity=int(Severity.HIGH))
    app.repo.add_subscriber("deals@example.com", ["KC"], now=NOW - timedelta(days=1), categories=["m&a"])
    DigestService(app.settings, app.repo, app.watchlist).close_due(NOW, force_window="manual:1")
    Sender(app.settings, app.repo).send_due()
    got = {r[0]: _parse(raw).get_body(("plain",)).get_content() for _f, r, raw in smtp_sink.messages}  # type: ignore[union-attr]
    assert set(got) == {"picky@example.com"}
    assert "KC story 5" in got["picky@example.com"] and "KC story 0" not in got["picky@example.com"]


def test_windows_follow_the_subscribers_clock() -> None:
    from daemon.store.repo import SubscriberView

    base = SubscriberView(
        1, "a@x.test", "active", "daily", "Asia/Tokyo", "08:00", 0, None, None, "skip", NOW - timedelta(days=30), {}
    )
    # 2026-11-27 15:00 UTC is 2026-11-28 00:00 in Tokyo: before 08:00, nothing due
    assert due_window(base, NOW) is None
    assert due_window(base, NOW + timedelta(hours=8)) == "daily:2026-11-28"
    weekly = replace(base, frequency="weekly", weekly_day=4, tz="UTC")  # Friday
    assert due_window(weekly, NOW) == "weekly:2026-W48"  # NOW is Friday 15:00
    assert due_window(weekly, NOW - timedelta(days=1)) is None
    fresh = replace(weekly, created_at=NOW - timedelta(hours=1))
    assert due_window(fresh, NOW) is None  # signed up after this week's send time: next week
    quiet = replace(base, tz="Europe/Paris", quiet_start="22:00", quiet_end="07:00")
    assert in_quiet_hours(quiet, NOW.replace(hour=22))  # 23:00 Paris
    assert not in_quiet_hours(quiet, NOW.replace(hour=12))
