"""Poll state of each source: due time, validators, failures, last error."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import select

from daemon.models import FetchResult, SourceSpec
from daemon.store.base import StoreBase
from daemon.store.tables import (
    Source,
)


def source_key(spec: SourceSpec) -> str:
    return f"{spec.id}:{spec.ticker}" if spec.ticker else spec.id


class SourceStore(StoreBase):
    def sync_sources(self, specs: Sequence[SourceSpec], now: datetime) -> None:
        """Make the source table follow sources.yaml; keep poll state of unchanged URLs."""
        with self.session() as s:
            existing = {row.id: row for row in s.execute(select(Source)).scalars()}
            for spec in specs:
                key = source_key(spec)
                row = existing.get(key)
                if row is None:
                    s.add(Source(id=key, spec_id=spec.id, url=spec.url, ticker=spec.ticker, next_due_at=now))
                elif row.url != spec.url:
                    row.url = spec.url
                    row.etag = None
                    row.last_modified = None
                    row.next_due_at = now
            s.commit()

    def get_source(self, key: str) -> Source | None:
        with self.session() as s:
            return s.get(Source, key)

    def list_sources(self) -> list[Source]:
        with self.session() as s:
            return list(s.execute(select(Source).order_by(Source.id)).scalars())

    def due_sources(self, now: datetime, keys: Iterable[str] | None = None) -> list[Source]:
        stmt = select(Source).where(Source.next_due_at <= now)
        if keys is not None:
            stmt = stmt.where(Source.id.in_(list(keys)))
        with self.session() as s:
            return list(s.execute(stmt.order_by(Source.next_due_at)).scalars())

    def record_poll(
        self,
        key: str,
        result: FetchResult,
        *,
        now: datetime,
        next_due_at: datetime,
        error: str | None,
        new_items: int,
    ) -> None:
        with self.session() as s:
            row = s.get(Source, key)
            if row is None:
                return
            row.last_polled_at = now
            row.last_status = result.status
            row.next_due_at = next_due_at
            if error:
                row.failures += 1
                row.last_error = error[:2000]
            else:
                row.failures = 0
                row.last_error = None
                row.last_ok_at = now
                if result.status == 304:
                    row.etag = result.etag or row.etag
                    row.last_modified = result.last_modified or row.last_modified
                else:
                    row.etag = result.etag
                    row.last_modified = result.last_modified
            row.items_total += new_items
            s.commit()
