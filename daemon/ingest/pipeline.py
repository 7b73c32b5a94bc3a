"""Poll one source end to end: fetch -> parse -> normalize -> link -> match -> cluster -> store.

The orchestrator is the only place that knows the order of the stages; each stage only knows
its input and output values. A failing source is recorded and backed off; it never stops the
others in the same poll.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from daemon.config import Settings
from daemon.ingest.cluster import Clusterer
from daemon.ingest.fetch import Fetcher
from daemon.ingest.normalize import normalize
from daemon.ingest.parse import parse_feed
from daemon.ingest.tickers import TickerLinker
from daemon.models import FetchResult, Item, Match, SourceSpec, Watchlist
from daemon.prices.alerts import AlertBook, fire
from daemon.prices.calendar import next_poll_at
from daemon.prices.events import price_event
from daemon.prices.providers import ProviderError, get_provider
from daemon.rules import RuleSet
from daemon.store.repo import Repo, source_key

MAX_BACKOFF = timedelta(hours=6)
CLUSTER_LOOKBACK = timedelta(hours=48)
# feedparser notes that do not mean the document is broken (charset or content-type mislabels)
BENIGN_WARNINGS = ("CharacterEncodingOverride", "NonXMLContentType")


@dataclass
class SourceReport:
    key: str
    url: str
    status: int = 0
    fetched: int = 0
    new_items: list[tuple[Item, list[Match]]] = field(default_factory=list)
    error: str | None = None
    not_modified: bool = False
    price_events: list[tuple[str, list[Match]]] = field(default_factory=list)


@dataclass
class PollReport:
    sources: list[SourceReport] = field(default_factory=list)

    @property
    def new_items(self) -> int:
        return sum(len(s.new_items) for s in self.sources)

    @property
    def matches(self) -> int:
        return sum(len(m) for s in self.sources for _, m in s.new_items) + sum(
            len(m) for s in self.sources for _, m in s.price_events
        )

    @property
    def errors(self) -> list[SourceReport]:
        return [s for s in self.sources if s.error]


def next_due(spec: SourceSpec, now: datetime, failures: int, rng: random.Random) -> datetime:
    """Back off exponentially on failure, capped, with jitter so sources do not poll in step."""
    base = spec.every
    if failures > 0:
        base = min(spec.every * (2 ** min(failures, 10)), max(MAX_BACKOFF, spec.every))
    jitter_s = spec.jitter.total_seconds()
    return now + base + timedelta(seconds=rng.uniform(0, jitter_s) if jitter_s > 0 else 0)


class Pipeline:
    def __init__(self, settings: Settings, repo: Repo, watchlist: Watchlist, specs: Sequence[SourceSpec]) -> None:
        self.settings = settings
        self.repo = repo
        self.watchlist = watchlist
        self.specs = {source_key(s): s for s in specs}
        self.linker = TickerLinker(watchlist)
        self.rng = random.Random()
        self.prices = PricePoller(settings, repo, specs)

    def sync(self, now: datetime) -> None:
        self.repo.sync_sources(list(self.specs.values()), now)

    async def poll_due(self, now: datetime, rules: RuleSet, *, force: bool = False) -> PollReport:
        """Poll every due source (every one when `force`): feeds concurrently, then prices."""
        report = await self.poll_feeds(now, rules, force=force)
        prices = await self.prices.poll_due(now, rules, force=force)
        report.sources.extend(prices.sources)
        return report

    async def poll_feeds(self, now: datetime, rules: RuleSet, *, force: bool = False) -> PollReport:
        keys = [k for k, s in self.specs.items() if s.kind == "feed"]
        if force:
            rows = {r.id: r for r in self.repo.list_sources() if r.id in set(keys)}
        else:
            rows = {r.id: r for r in self.repo.due_sources(now, keys)}
        report = PollReport()
        if not rows:
            return report
        async with Fetcher(self.settings) as fetcher:
            results = await asyncio.gather(
                *(
                    fetcher.fetch(
                        self.specs[k].url,
                        etag=row.etag,
                        last_modified=row.last_modified,
                        allow_private=self.specs[k].allow_private,
                    )
                    for k, row in rows.items()
                )
            )

        def ingest_all() -> list[SourceReport]:
            clusterer = Clusterer(self.repo.recent_stories(now - CLUSTER_LOOKBACK))
            return [
                self._ingest(self.specs[key], result, rules, clusterer, now, row.failures)
                for (key, row), result in zip(rows.items(), results, strict=True)
            ]

        # parsing and storing is blocking work: keep it off the event loop the scheduler runs on
        report.sources.extend(await asyncio.to_thread(ingest_all))
        return report

    def _ingest(
        self, spec: SourceSpec, result: FetchResult, rules: RuleSet, clusterer: Clusterer, now: datetime, failures: int
    ) -> SourceReport:
        key = source_key(spec)
        rep = SourceReport(key=key, url=spec.url, status=result.status)
        error = result.error
        if error is None and not result.not_modified and not result.ok:
            error = f"HTTP {result.status}"
        items: list[Item] = []
        if error is None and not result.not_modified:
            parsed = parse_feed(result.body, content_type=result.content_type, url=result.final_url or spec.url)
            if parsed.error:
                error = f"unreadable feed: {parsed.error}"
            else:
                rep.fetched = len(parsed.entries)
                if parsed.warning and not parsed.warning.startswith(BENIGN_WARNINGS):
                    # recovered what could be read, but the operator should see the feed is broken
                    error = f"malformed feed ({len(parsed.entries)} entries recovered): {parsed.warning}"
                for entry in parsed.entries:
                    item = normalize(entry, source_id=spec.id, source_label=spec.display, now=now)
                    if item is not None:
                        items.append(item)
        rep.not_modified = result.not_modified
        rep.error = error
        known = self.repo.known_uids([i.uid for i in items])
        for item in items:
            if item.uid in known:
                continue
            known.add(item.uid)
            tickers = self.linker.link(item, spec.ticker)
            linked = _with_tickers(item, tickers)
            matches = rules.match_item(linked)
            cluster_id = clusterer.assign(linked)
            if self.repo.store_item(linked, cluster_id=cluster_id, matches=matches, now=now) is not None:
                rep.new_items.append((linked, matches))
        self.repo.record_poll(
            key,
            result,
            now=now,
            next_due_at=next_due(spec, now, failures + 1 if error else 0, self.rng),
            error=error,
            new_items=len(rep.new_items),
        )
        return rep


PRICE_ALERTS_KEY = "price_alert_book"


class PricePoller:
    """Poll price sources on the exchange's session: quotes -> history -> event -> price rules.

    The alert book (armed / cooldown state per rule and ticker) is kept in the database, so a
    restart neither re-alerts a stock that stays down nor forgets a cooldown.
    """

    def __init__(self, settings: Settings, repo: Repo, specs: Sequence[SourceSpec]) -> None:
        self.settings = settings
        self.repo = repo
        self.specs = {source_key(s): s for s in specs if s.kind == "prices"}
        self.rng = random.Random()

    async def poll_due(self, now: datetime, rules: RuleSet, *, force: bool = False) -> PollReport:
        keys = list(self.specs)
        rows = {r.id: r for r in (self.repo.list_sources() if force else self.repo.due_sources(now, keys))}
        rows = {k: v for k, v in rows.items() if k in self.specs}
        report = PollReport()
        if not rows:
            return report
        book = AlertBook.from_json(self.repo.get_meta(PRICE_ALERTS_KEY))
        async with Fetcher(self.settings) as fetcher:
            for key, row in rows.items():
                spec = self.specs[key]
                rep = SourceReport(key=key, url=spec.url)
                result = FetchResult(url=spec.url, status=0)
                error: str | None = None
                try:
                    provider = get_provider(spec.provider or "yahoo")
                    symbol = spec.ticker or ""
                    url = spec.url or provider.url_for(symbol)
                    rep.url = url
                    if url.startswith("file://"):
                        body = Path(url.removeprefix("file://")).read_bytes()
                        result = FetchResult(url=url, status=200, body=body)
                    else:
                        result = await fetcher.fetch(url, allow_private=spec.allow_private)
                    rep.status = result.status
                    if result.error or not result.ok:
                        raise ProviderError(
                            spec.provider or "yahoo", symbol, result.error or f"HTTP {result.status}", kind="upstream"
                        )
                    quotes = provider.parse(result.body, symbol, now=now)
                    rep.fetched = len(quotes)
                    self.repo.store_quotes(quotes)
                    event = price_event(self.repo.quote_history(symbol), exchange=spec.market_hours or "XNYS")
                    if event is not None:
                        matches = fire(book, rules, event, now, exchange=spec.market_hours or "XNYS")
                        if matches:
                            self.repo.store_price_event(event, matches, now)
                            rep.price_events.append((symbol, matches))
                except (ProviderError, OSError, ValueError) as exc:
                    error = str(exc) or type(exc).__name__
                rep.error = error
                failures = row.failures + 1 if error else 0
                if error:
                    due = next_due(spec, now, failures, self.rng)
                else:
                    due = next_poll_at(now, spec.market_hours or "XNYS", spec.every, now)
                self.repo.record_poll(key, result, now=now, next_due_at=due, error=error, new_items=0)
                report.sources.append(rep)
        self.repo.set_meta(PRICE_ALERTS_KEY, book.to_json())
        return report


def _with_tickers(item: Item, tickers: Sequence[str]) -> Item:
    from dataclasses import replace

    return replace(item, tickers=tuple(tickers))


def report_json(report: PollReport) -> str:
    """A machine-readable poll summary (for `keynews poll --once --json`)."""
    return json.dumps(
        [
            {
                "source": s.key,
                "status": s.status,
                "new": len(s.new_items),
                "error": s.error,
                "items": [
                    {"title": i.title, "tickers": list(i.tickers), "rules": [m.rule_id for m in ms]}
                    for i, ms in s.new_items
                ],
            }
            for s in report.sources
        ],
        indent=2,
    )


def bundled_samples_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "samples"
