"""The store on real PostgreSQL: migrations, item dedupe, windows closed once, SKIP LOCKED claims."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import text
from workspace import NOW

from daemon.models import Explanation, Item, Match, Severity
from daemon.store.db import current_revision, head_revision, make_engine, upgrade
from daemon.store.repo import Repo

URL = os.environ.get("KEYNEWS_TEST_DATABASE_URL", "")
# one schema per test process: several checkouts may run the suite against one server at once
SCHEMA = f"keynews_test_{os.getpid()}"
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not URL, reason="KEYNEWS_TEST_DATABASE_URL is not set (PostgreSQL tests need a server)"),
]


@pytest.fixture
def repo() -> Iterator[Repo]:
    engine = make_engine(URL)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
    engine.dispose()
    engine = make_engine(URL)

    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _schema(dbapi_conn, _rec):  # type: ignore[no-untyped-def]
        cur = dbapi_conn.cursor()
        cur.execute(f"SET search_path TO {SCHEMA}")
        cur.close()
        dbapi_conn.commit()

    upgrade(engine)
    assert current_revision(engine) == head_revision() == "0002"
    yield Repo(engine)
    engine.dispose()
    cleanup = make_engine(URL)
    with cleanup.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
    cleanup.dispose()


def _item(i: int) -> Item:
    return Item(
        uid=f"pg{i}",
        source_id="wire",
        url=f"https://x.example.com/{i}",
        title=f"story {i}: financial results",
        summary="",
        published_at=NOW,
        tickers=("KC",),
    )


MATCH = Match("results", "Results", "earnings", Severity.HIGH, "KC", (Explanation("results", "headline", "results"),))


def test_items_are_stored_once(repo: Repo) -> None:
    assert repo.store_item(_item(1), cluster_id="c1", matches=[MATCH], now=NOW) is not None
    assert repo.store_item(_item(1), cluster_id="c1", matches=[MATCH], now=NOW) is None
    assert repo.known_uids(["pg1", "pg2"]) == {"pg1"}


def test_window_closes_once_and_claims_never_overlap(repo: Repo) -> None:
    for i in range(3):
        repo.store_item(_item(i), cluster_id=f"c{i}", matches=[MATCH], now=NOW)
    subs = [repo.add_subscriber(f"p{i}@example.com", ["KC"], now=NOW - timedelta(days=1)) for i in range(40)]
    for sid in subs:
        pending = repo.pending_matches(sid, ["KC"], since=NOW - timedelta(days=2))
        assert len(pending) == 3
        kwargs = dict(
            subscriber_id=sid,
            window_key="daily:x",
            kind="digest",
            message_id=f"<{sid}@t>",
            subject="s",
            raw=b"raw",
            match_ids=[m.match_id for m in pending],
            now=NOW,
        )
        assert repo.close_window(**kwargs) is not None  # type: ignore[arg-type]
        assert repo.close_window(**kwargs) is None  # type: ignore[arg-type]
        assert repo.pending_matches(sid, ["KC"], since=NOW - timedelta(days=2)) == []

    claimed: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            rows = repo.claim_outbox(NOW, lease=timedelta(minutes=5), limit=3)
            if not rows:
                return
            with lock:
                claimed.extend(r.id for r in rows if r.id is not None)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 40 and len(set(claimed)) == 40
    # packed mail reads back whole; done rows lose their bytes to pruning, rows still to send keep them
    rows = {r.id: r for r in repo.outbox_rows()}
    assert all(r.raw == b"raw" for r in rows.values())
    repo.mark_sent_many(claimed[:10], NOW)
    assert repo.prune_outbox(NOW + timedelta(days=1)) == 10
    after = {r.id: r.raw for r in repo.outbox_rows()}
    assert [oid for oid, raw in after.items() if raw == b""] == sorted(claimed[:10])
