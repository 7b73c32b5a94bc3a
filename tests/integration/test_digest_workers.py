"""Big digest runs: render worker processes and the sender that follows close_due.

DigestService renders a page in worker processes once it holds POOL_MIN digests; these tests
lower POOL_MIN so a handful of subscribers takes that path, and compare it byte for byte with the
in-process path on an identical database. close_and_send is checked against a real aiosmtpd:
every queued mail goes out exactly once while closing is still running.
"""

from __future__ import annotations

import email
import html
from collections.abc import Iterator
from datetime import timedelta
from email import policy
from pathlib import Path
from typing import Any

import pytest
from smtpserver import SmtpSink
from sqlalchemy import text as sql
from workspace import NOW, make_workspace

import daemon.mail.digest as digest_module
from daemon.mail.digest import DigestService
from daemon.mail.send import Sender, close_and_send
from daemon.models import Explanation, Item, Match, Severity
from daemon.service import App
from daemon.store.repo import Repo

TICKERS = ("KC", "AAPL", "MSFT", "NVDA")
SUBSCRIBERS = 12


def seed(repo: Repo) -> None:
    """Stories on four tickers (one critical, so alerts are closed too) and a dozen subscribers."""
    for t, ticker in enumerate(TICKERS):
        for i in range(3):
            item = Item(
                uid=f"u-{ticker}-{i}",
                source_id="wire",
                source_label="Test Wire",
                url=f"https://wire.example.com/{ticker}/{i}",
                title=f"{ticker} story {i}: financial results beat — Zürich ✓",
                summary="Revenue rose 12% to $2.1 billion; margin=wider <b>than</b> expected.",
                published_at=NOW - timedelta(hours=2 + i),
                tickers=(ticker,),
            )
            severity = Severity.CRITICAL if (t, i) == (0, 0) else (Severity.LOW, Severity.MEDIUM, Severity.HIGH)[i]
            match = Match(
                rule_id="results",
                rule_title="Quarterly or annual results",
                category="earnings",
                severity=severity,
                ticker=ticker,
                explanations=(Explanation("results", "headline", "financial results", 12, 29),),
            )
            repo.store_item(item, cluster_id=item.uid, matches=[match], now=NOW - timedelta(hours=1))
    for n in range(SUBSCRIBERS):
        tickers = [TICKERS[(n + k) % len(TICKERS)] for k in range(1 + n % 3)]
        tz = ("UTC", "America/New_York", "Asia/Tokyo")[n % 3]
        repo.add_subscriber(f"sub{n:02d}@example.com", tickers, now=NOW - timedelta(days=1), tz=tz)


def outbox(app: App) -> list[tuple[str, str, str, str, str, bytes]]:
    """Every outbox row, mail bytes unpacked (the column is read through its type)."""
    emails = {sub.id: sub.email for sub in app.repo.subscribers()}
    rows = [
        (emails[r.subscriber_id], r.window_key, r.kind, r.message_id, r.subject, r.raw) for r in app.repo.outbox_rows()
    ]
    return sorted(rows, key=lambda r: (r[0], r[1]))


@pytest.fixture
def workers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Two worker processes for any page of 3+ digests, on any machine (as on a 4-core one)."""
    monkeypatch.setattr(digest_module, "POOL_MIN", 3)
    monkeypatch.setattr(digest_module.os, "cpu_count", lambda: 2 + digest_module.SPARE_CORES)
    yield


def _app(path: Path, **overrides: object) -> App:
    path.mkdir()
    app = App.load(make_workspace(path, "sources: []\n", **overrides))
    seed(app.repo)
    return app


def test_worker_render_matches_serial(tmp_path: Path, workers: None, monkeypatch: pytest.MonkeyPatch) -> None:
    pooled, serial = _app(tmp_path / "pooled"), _app(tmp_path / "serial")
    spawned: list[object] = []
    real_worker = digest_module._Worker

    def counting_worker(*args: object) -> object:
        spawned.append(args)
        return real_worker(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(digest_module, "_Worker", counting_worker)
    got = DigestService(pooled.settings, pooled.repo, pooled.watchlist).close_due(NOW, force_window="manual:1")
    assert len(spawned) == 2, "the run did not go through worker processes"
    monkeypatch.setattr(digest_module, "POOL_MIN", 10**9)
    want = DigestService(serial.settings, serial.repo, serial.watchlist).close_due(NOW, force_window="manual:1")
    assert (got.queued, got.alerts, got.skipped) == (want.queued, want.alerts, want.skipped)
    assert got.queued == SUBSCRIBERS and got.alerts >= 1
    assert sorted(got.subscribers) == sorted(want.subscribers)
    rows = outbox(pooled)
    assert rows == outbox(serial)  # same subjects, Message-IDs and bytes, whichever process rendered
    for _email, _key, kind, _mid, _subject, raw in rows:
        msg = email.message_from_bytes(raw, policy=policy.default)
        assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"], kind
        assert "Zürich ✓" in html.unescape(msg.get_body(("html",)).get_content())  # type: ignore[union-attr]


@pytest.mark.parametrize("process", [False, True], ids=["sender-thread", "sender-process"])
def test_close_and_send_delivers_each_mail_once(
    tmp_path: Path, workers: None, smtp_sink: SmtpSink, process: bool
) -> None:
    app = _app(tmp_path / "ws", smtp_host="127.0.0.1", smtp_port=smtp_sink.port, smtp_timeout=3.0)
    service = DigestService(app.settings, app.repo, app.watchlist)
    closed, report = close_and_send(
        lambda: service.close_due(NOW, force_window="manual:1"), Sender(app.settings, app.repo), process=process
    )
    assert report.sent == closed.queued + closed.alerts == SUBSCRIBERS + closed.alerts
    assert not report.failed and not report.retried
    ids = [email.message_from_bytes(raw, policy=policy.default)["Message-ID"] for _f, _r, raw in smtp_sink.messages]
    assert len(ids) == len(set(ids)) == report.sent
    with app.repo.engine.connect() as conn:
        statuses = conn.execute(sql("SELECT status, count(*) FROM outbox GROUP BY status")).all()
    assert {str(row[0]): row[1] for row in statuses} == {"sent": report.sent}
    # a second run finds nothing to close or send
    closed2, report2 = close_and_send(
        lambda: service.close_due(NOW, force_window="manual:1"), Sender(app.settings, app.repo), process=process
    )
    assert (closed2.queued, closed2.alerts, report2.sent) == (0, 0, 0)


@pytest.mark.parametrize("process", [False, True], ids=["sender-thread", "sender-process"])
def test_close_and_send_raises_what_closing_raised(tmp_path: Path, smtp_sink: SmtpSink, process: bool) -> None:
    app = _app(tmp_path / "ws", smtp_host="127.0.0.1", smtp_port=smtp_sink.port, smtp_timeout=3.0)

    def close() -> None:
        raise RuntimeError("closing failed")

    with pytest.raises(RuntimeError, match="closing failed"):
        close_and_send(close, Sender(app.settings, app.repo), process=process)


def test_a_big_backlog_hands_sending_to_a_process(
    tmp_path: Path, smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """process=None: sending starts in a thread and moves to a process once HANDOFF_QUEUED mails wait."""
    import time

    import daemon.mail.send as sender_module
    from daemon.mail.workers import Child

    app = _app(tmp_path / "ws", smtp_host="127.0.0.1", smtp_port=smtp_sink.port, smtp_timeout=3.0)
    service = DigestService(app.settings, app.repo, app.watchlist)
    children: list[tuple[str, str]] = []
    real_init = Child.__init__

    def counting_init(self: Child, module: str, entry: str) -> None:
        children.append((module, entry))
        real_init(self, module, entry)

    def close_then_wait_for_handoff(window: str) -> Any:
        closed = service.close_due(NOW, force_window=window)
        deadline = time.monotonic() + 10
        while not children and time.monotonic() < deadline:
            time.sleep(0.01)
        return closed

    monkeypatch.setattr(Child, "__init__", counting_init)
    monkeypatch.setattr(sender_module.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(sender_module, "HANDOFF_QUEUED", 1)
    closed, report = close_and_send(lambda: close_then_wait_for_handoff("manual:1"), Sender(app.settings, app.repo))
    assert children == [sender_module.FOLLOWER]
    assert report.sent == closed.queued + closed.alerts == len(smtp_sink.messages)
    ids = [email.message_from_bytes(raw, policy=policy.default)["Message-ID"] for _f, _r, raw in smtp_sink.messages]
    assert len(set(ids)) == len(ids)
    # a run whose backlog stays small never starts a process (the scheduler's idle ticks)
    monkeypatch.setattr(sender_module, "HANDOFF_QUEUED", 10**6)
    children.clear()
    other = _app(tmp_path / "ws2", smtp_host="127.0.0.1", smtp_port=smtp_sink.port, smtp_timeout=3.0)
    service2 = DigestService(other.settings, other.repo, other.watchlist)
    closed2, report2 = close_and_send(
        lambda: service2.close_due(NOW, force_window="manual:1"), Sender(other.settings, other.repo)
    )
    assert not children and report2.sent == closed2.queued + closed2.alerts > 0


def test_outbox_mail_is_stored_packed_and_read_back_whole(tmp_path: Path) -> None:
    """The raw column holds zlib-packed mail; rows written before packing still read as they are."""
    from daemon.store.tables import PACKED

    app = _app(tmp_path / "ws")
    DigestService(app.settings, app.repo, app.watchlist).close_due(NOW, force_window="manual:1")
    rows = app.repo.outbox_rows()
    with app.repo.engine.connect() as conn:
        stored = dict(conn.execute(sql("SELECT id, raw FROM outbox")).all())  # type: ignore[arg-type]
    for row in rows:
        msg = email.message_from_bytes(row.raw, policy=policy.default)
        assert msg["Message-ID"] == row.message_id and msg.is_multipart()
        assert bytes(stored[row.id]).startswith(PACKED)
        assert len(stored[row.id]) * 2 < len(row.raw)
    # a row as an older keynews wrote it (plain bytes) is read unchanged
    plain = rows[0].raw
    with app.repo.engine.begin() as conn:
        conn.execute(sql("UPDATE outbox SET raw = :raw WHERE id = :id"), {"raw": plain, "id": rows[0].id})
    assert app.repo.outbox_rows()[0].raw == plain


def test_two_core_machine_renders_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With only the closer's and the sender's cores, big pages are still rendered here."""
    app = _app(tmp_path / "ws")
    spawned: list[object] = []
    monkeypatch.setattr(digest_module, "POOL_MIN", 3)
    monkeypatch.setattr(digest_module.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(digest_module, "_Worker", lambda *args: spawned.append(args))
    got = DigestService(app.settings, app.repo, app.watchlist).close_due(NOW, force_window="manual:1")
    assert got.queued == SUBSCRIBERS and not spawned


def test_a_sender_process_that_dies_leaves_the_sending_to_this_one(
    tmp_path: Path, smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    import daemon.mail.send as sender_module

    app = _app(tmp_path / "ws", smtp_host="127.0.0.1", smtp_port=smtp_sink.port, smtp_timeout=3.0)
    service = DigestService(app.settings, app.repo, app.watchlist)
    monkeypatch.setattr(sender_module, "FOLLOWER", ("daemon.mail.send", "no_such_entry_point"))  # exits at once
    closed, report = close_and_send(
        lambda: service.close_due(NOW, force_window="manual:1"), Sender(app.settings, app.repo), process=True
    )
    assert report.sent == closed.queued + closed.alerts == len(smtp_sink.messages) > SUBSCRIBERS
    ids = [email.message_from_bytes(raw, policy=policy.default)["Message-ID"] for _f, _r, raw in smtp_sink.messages]
    assert len(set(ids)) == len(ids)


def test_prune_drops_old_mail_bytes_but_never_lets_mail_repeat(tmp_path: Path) -> None:
    app = _app(tmp_path / "ws")
    service = DigestService(app.settings, app.repo, app.watchlist)
    first = service.close_due(NOW, force_window="manual:1")
    sent = Sender(app.settings, app.repo).send_due()  # the .eml outbox
    assert sent.sent == first.queued + first.alerts > 0
    waiting = app.repo.add_subscriber("late@example.com", ["KC"], now=NOW - timedelta(days=1))
    late = service.close_due(NOW, force_window="manual:1")  # queued, not sent yet
    assert late.queued == 1 and late.subscribers == ["late@example.com"]
    assert app.repo.prune_outbox(NOW - timedelta(seconds=1)) == 0  # nothing that old
    dropped = app.repo.prune_outbox(NOW + timedelta(days=1))
    assert dropped == sent.sent
    rows = app.repo.outbox_rows()
    assert all(r.raw == b"" for r in rows if r.status == "sent")
    queued = [r for r in rows if r.status == "queued"]
    assert len(queued) == late.queued + late.alerts
    assert all(r.subscriber_id == waiting and r.raw for r in queued)  # mail still to send keeps its bytes
    # the rows remain: the window does not close again, no story is mailed twice
    again = service.close_due(NOW, force_window="manual:1")
    assert (again.queued, again.alerts) == (0, 0)
    assert Sender(app.settings, app.repo).send_due().sent == len(queued)  # only the late subscriber's
