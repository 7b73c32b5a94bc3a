"""The schema. Changes only through a new Alembic migration (migrations go forward only).

Datetimes are aware UTC on both sides (SQLModel's UTCDateTime): PostgreSQL keeps timestamptz,
SQLite keeps UTC without an offset, and both hand back aware UTC values, so no code compares a
naive time with an aware one.
"""

from __future__ import annotations

import zlib
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, LargeBinary, Text, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

PACKED = b"\x00z1"  # a mail message never starts with NUL: rows written before packing read as-is


class PackedMail(TypeDecorator[bytes]):
    """Rendered mail, zlib-compressed in the column (about 5x smaller for HTML digests).

    A day of digests for 10,000 subscribers is ~320 MB raw: packed, the database, its WAL and
    every checkpoint move a fifth of that, which the closer and the sender both wait on.
    Compression level 1: ~0.1 ms a message, nearly the ratio of level 6.
    """

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> bytes | None:
        if value is None:
            return None
        data = bytes(value)
        return PACKED + zlib.compress(data, 1) if data else data

    def process_result_value(self, value: Any, dialect: Any) -> bytes | None:
        if value is None:
            return None
        data = bytes(value)
        return zlib.decompress(data[len(PACKED) :]) if data.startswith(PACKED) else data


class Source(SQLModel, table=True):
    __tablename__ = "source"
    id: str = Field(primary_key=True)  # spec id, or spec id + ":" + ticker when per-ticker
    spec_id: str = Field(index=True)
    url: str
    ticker: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    next_due_at: datetime = Field(index=True)
    last_polled_at: datetime | None = None
    last_ok_at: datetime | None = None
    last_status: int | None = None
    failures: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    items_total: int = 0
    body_hash: str | None = None  # of the last body parsed: an unchanged body is not parsed again


class ItemRow(SQLModel, table=True):
    __tablename__ = "item"
    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(unique=True)
    source_id: str = Field(index=True)
    source_label: str = ""
    url: str = ""
    guid: str = ""
    title: str = Field(sa_column=Column(Text, nullable=False))
    summary: str = Field(default="", sa_column=Column(Text, nullable=False))
    published_at: datetime = Field(index=True)
    fetched_at: datetime = Field(index=True)
    cluster_id: str = Field(index=True)
    form: str | None = None
    filing_items: str = ""  # comma separated 8-K item numbers
    accession: str | None = Field(default=None, index=True)
    # published longer ago than the source's max_age when first seen: stored and matched, never mailed
    backlog: bool = False
    # filings read for what they say (ingest/filings): None = not a filing to read; pending | done | failed
    enrich_state: str | None = Field(default=None, index=True)
    enrich_attempts: int = 0
    enrich_next_at: datetime | None = None
    enrich_note: str | None = Field(default=None, sa_column=Column(Text))  # why it fell back, or what was used
    feed_title: str | None = Field(default=None, sa_column=Column(Text))  # the feed's own title, kept when enriched


class ItemTicker(SQLModel, table=True):
    __tablename__ = "item_ticker"
    item_id: int = Field(foreign_key="item.id", primary_key=True, ondelete="CASCADE")
    ticker: str = Field(primary_key=True, index=True)


class PriceEventRow(SQLModel, table=True):
    __tablename__ = "price_event"
    id: int | None = Field(default=None, primary_key=True)
    ticker: str = Field(index=True)
    at: datetime
    window: str = "1d"
    metrics: str = Field(default="{}", sa_column=Column(Text, nullable=False))  # JSON


class MatchRow(SQLModel, table=True):
    __tablename__ = "match"
    __table_args__ = (
        UniqueConstraint("item_id", "rule_id", "ticker", name="uq_match_item_rule_ticker"),
        UniqueConstraint("price_event_id", "rule_id", "ticker", name="uq_match_event_rule_ticker"),
        Index("ix_match_ticker_created", "ticker", "created_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    item_id: int | None = Field(default=None, foreign_key="item.id", ondelete="CASCADE")
    price_event_id: int | None = Field(default=None, foreign_key="price_event.id", ondelete="CASCADE")
    rule_id: str = Field(index=True)
    rule_title: str = ""
    ticker: str = ""
    category: str
    severity: int
    explanation: str = Field(default="[]", sa_column=Column(Text, nullable=False))  # JSON list
    created_at: datetime = Field(index=True)


class QuoteRow(SQLModel, table=True):
    __tablename__ = "quote"
    __table_args__ = (UniqueConstraint("ticker", "at", "daily", name="uq_quote_ticker_at"),)
    id: int | None = Field(default=None, primary_key=True)
    ticker: str = Field(index=True)
    at: datetime
    daily: bool = True
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float
    volume: float | None = None


class Subscriber(SQLModel, table=True):
    __tablename__ = "subscriber"
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(unique=True)
    status: str = "active"  # pending | active | unsubscribed | bounced
    frequency: str = "daily"  # immediate | daily | weekly
    tz: str = "UTC"
    send_time: str = "07:00"  # local HH:MM
    weekly_day: int = 0  # Monday = 0, for weekly digests
    quiet_start: str | None = None  # local HH:MM; alerts and immediate mail wait while quiet
    quiet_end: str | None = None
    nothing_new: str = "skip"  # skip | note
    created_at: datetime
    confirmed_at: datetime | None = None
    hard_failures: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text))


class Subscription(SQLModel, table=True):
    __tablename__ = "subscription"
    subscriber_id: int = Field(foreign_key="subscriber.id", primary_key=True, ondelete="CASCADE")
    ticker: str = Field(primary_key=True)
    categories: str = ""  # comma separated; empty = every category
    min_severity: int = 1


class Outbox(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "window_key", name="uq_outbox_subscriber_window"),
        Index("ix_outbox_due", "status", "next_attempt_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", ondelete="CASCADE")
    window_key: str
    kind: str = "digest"  # digest | alert | note | confirm
    message_id: str
    subject: str = ""
    status: str = "queued"  # queued | sending | sent | failed | skipped
    attempts: int = 0
    next_attempt_at: datetime
    lease_until: datetime | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime
    sent_at: datetime | None = None
    raw: bytes = Field(default=b"", sa_column=Column(PackedMail, nullable=False))


class OutboxMatch(SQLModel, table=True):
    __tablename__ = "outbox_match"
    __table_args__ = (Index("ix_outbox_match_subscriber", "subscriber_id", "kind", "match_id"),)
    outbox_id: int = Field(foreign_key="outbox.id", primary_key=True, ondelete="CASCADE")
    match_id: int = Field(foreign_key="match.id", primary_key=True, ondelete="CASCADE")
    subscriber_id: int
    kind: str = "digest"


class StorySent(SQLModel, table=True):
    """A story (cluster) mailed to a subscriber: the unit of "each story once, ever".

    Written in the transaction that closes the window carrying it. A later item of the same story
    is mailed again only when its severity is higher than `severity` here (as an update).
    """

    __tablename__ = "story_sent"
    subscriber_id: int = Field(foreign_key="subscriber.id", primary_key=True, ondelete="CASCADE")
    cluster_id: str = Field(primary_key=True)
    severity: int
    outbox_id: int | None = Field(default=None, foreign_key="outbox.id", ondelete="SET NULL")
    kind: str = "digest"  # digest | alert
    sent_at: datetime


class Meta(SQLModel, table=True):
    """Small named values: the token secret, the price alert book, the rule-set version."""

    __tablename__ = "meta"
    key: str = Field(primary_key=True)
    value: str = Field(default="", sa_column=Column(Text, nullable=False))
