"""`Repo`: one handle on every store, so callers hold a single object.

Each store lives in a module named after what it keeps (sources, items, matches, prices,
subscribers, outbox, meta); this class only puts them together.
"""

from __future__ import annotations

from daemon.store.base import StoreBase, utcnow
from daemon.store.items import ItemStore
from daemon.store.matches import MatchStore, StoredMatch
from daemon.store.meta import MetaStore
from daemon.store.outbox import OutboxStore, WindowClose
from daemon.store.prices import PriceStore
from daemon.store.sources import SourceStore, source_key
from daemon.store.subscribers import SubscriberStore, SubscriberView

__all__ = ["Repo", "StoredMatch", "SubscriberView", "WindowClose", "source_key", "utcnow"]


class Repo(MetaStore, SourceStore, ItemStore, MatchStore, PriceStore, SubscriberStore, OutboxStore, StoreBase):
    """Every store on one engine."""
