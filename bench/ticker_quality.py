"""Precision and recall of ticker linking on a real Seeking Alpha feed whose items carry tags.

Every item of `seekingalpha_msft_2017-10.xml` lists its companies as
`<sa:stock><sa:symbol>MSFT</sa:symbol><sa:company_name>Microsoft Corporation</sa:company_name>`.
Those tags are the truth. The watchlist is every tagged symbol with the company name the feed gives
for it (public registry names such as "Alphabet Inc.", no aliases, nothing written per item). The
items then go through the real parse and normalize stages with their tags removed, and the linker
sees only what a reader sees: title and summary. A pair (item, symbol) is a true positive when the
linker found a tagged symbol, a false positive when it found one the feed did not tag, a miss when
a tagged symbol was not found.

Precision on 28 links says little, so `--probe N` also links the same watchlist over the
untagged Reuters-21578 dev texts (1987 business news, `../shared/corpus/labeled/`) and prints how
many links it made and N of them drawn at random with the words around them, for a person to
judge (docs/tickers.md gives the last judgement).

Three of the 30 items are weekly round-ups ("Stocks to watch next week", "Notable earnings after
Thursday's close") tagged with 65-113 companies that their one-line title does not name; the
figures are printed with and without them.

`--speed` times linking over those Reuters texts (title + 600 characters) and prints items/s and
the ratio against the linker as it was before the linking rules of docs/tickers.md (commit
29b4c03, read with `git show`), on the same texts and watchlist, in the same run.

    .venv/bin/python bench/ticker_quality.py [--feed PATH] [--show] [--probe 40] [--speed]
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import subprocess
import sys
import time
import types
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from daemon.ingest.normalize import clean_text, normalize
from daemon.ingest.parse import parse_feed
from daemon.ingest.tickers import TickerLinker
from daemon.models import Item, Ticker, Watchlist

ROOT = Path(__file__).resolve().parents[1]
SHARED_FEED = ROOT.parent / "shared" / "corpus" / "feeds" / "news_rss" / "seekingalpha_msft_2017-10.xml"
PACKAGED_FEED = ROOT / "daemon" / "samples" / "feeds" / "seekingalpha_msft_2017-10.xml"  # same bytes
SA = "{https://seekingalpha.com/api/1.0}"
ROUNDUP_MIN_TAGS = 10  # an item tagged with more companies than this is a round-up list
REUTERS = ROOT.parent / "shared" / "corpus" / "labeled" / "reuters21578_dev.jsonl"
NOW = datetime(2017, 10, 27, tzinfo=UTC)


def tagged(feed: bytes) -> tuple[list[tuple[str, ...]], dict[str, str]]:
    """Per item, its tagged symbols; and symbol -> company name, read with a plain XML parser."""
    root = ET.fromstring(feed)
    truth: list[tuple[str, ...]] = []
    names: dict[str, str] = {}
    for node in root.iter("item"):
        symbols = []
        for stock in node.iter(f"{SA}stock"):
            symbol = (stock.findtext(f"{SA}symbol") or "").strip().upper()
            if symbol:
                symbols.append(symbol)
                names.setdefault(symbol, (stock.findtext(f"{SA}company_name") or "").strip())
        truth.append(tuple(dict.fromkeys(symbols)))
    return truth, names


def untagged_items(feed: bytes) -> list[Item]:
    """The feed's items through the real parse and normalize stages, with their tags hidden."""
    parsed = parse_feed(feed)
    items = []
    for entry in parsed.entries:
        item = normalize(replace(entry, ticker_hints=(), tags=()), source_id="sa", source_label="SA", now=NOW)
        assert item is not None
        items.append(item)
    return items


def score(pairs: list[tuple[set[str], set[str]]]) -> tuple[int, int, int]:
    tp = sum(len(found & truth) for found, truth in pairs)
    fp = sum(len(found - truth) for found, truth in pairs)
    fn = sum(len(truth - found) for found, truth in pairs)
    return tp, fp, fn


def line(label: str, tp: int, fp: int, fn: int) -> str:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return f"{label}: precision={precision:.3f} recall={recall:.3f} (tp={tp} fp={fp} fn={fn})"


def probe(linker: TickerLinker, names: dict[str, str], path: Path, sample: int) -> None:
    """Links made on untagged text, and a random sample of them to judge by eye."""
    links: list[tuple[str, str]] = []
    docs = 0
    with path.open(encoding="utf-8") as fh:
        for raw in fh:
            doc = json.loads(raw)
            docs += 1
            title, body = clean_text(doc.get("title", "")), clean_text(doc.get("body", ""))[:600]
            item = Item(uid="", source_id="reuters", url="", title=title, summary=body, published_at=NOW)
            links.extend((symbol, f"{title} | {body}") for symbol in linker.link(item))
    counts = collections.Counter(symbol for symbol, _ in links)
    print(f"probe: {docs} untagged Reuters-21578 texts, {len(links)} links; most linked: {counts.most_common(12)}")
    for symbol, text in random.Random(7).sample(links, min(sample, len(links))):
        print(f"  {symbol:6} {names[symbol][:28]:28} {_around(text, names[symbol])}")


BASELINE_COMMIT = "29b4c03"


def speed(linker: TickerLinker, watchlist: Watchlist, path: Path) -> None:
    """Items/s of linking, and the ratio against the linker of BASELINE_COMMIT."""
    items = []
    with path.open(encoding="utf-8") as fh:
        for raw in fh:
            doc = json.loads(raw)
            title, body = clean_text(doc.get("title", "").title()), clean_text(doc.get("body", ""))[:600]
            items.append(Item(uid="", source_id="reuters", url="", title=title, summary=body, published_at=NOW))
    rate = _rate(linker, items)
    print(f"speed: linking {rate:,.0f} items/s ({len(items)} texts, watchlist {len(watchlist.tickers)})")
    source = subprocess.run(
        ["git", "show", f"{BASELINE_COMMIT}:daemon/ingest/tickers.py"], cwd=ROOT, capture_output=True, text=True
    )
    if source.returncode != 0:
        print(f"speed: baseline {BASELINE_COMMIT} not in this checkout's history; no ratio")
        return
    baseline = types.ModuleType("baseline_tickers")
    sys.modules[baseline.__name__] = baseline
    exec(compile(source.stdout, f"{BASELINE_COMMIT}:daemon/ingest/tickers.py", "exec"), baseline.__dict__)
    base_rate = _rate(baseline.TickerLinker(watchlist), items)
    print(f"speed: baseline {BASELINE_COMMIT} {base_rate:,.0f} items/s; ratio_vs_baseline={rate / base_rate:.2f}")


def _rate(linker: object, items: list[Item]) -> float:
    link = linker.link  # type: ignore[attr-defined]
    best = 0.0
    for _ in range(3):  # best of three: the machine is shared
        started = time.perf_counter()
        for item in items:
            link(item)
        best = max(best, len(items) / (time.perf_counter() - started))
    return best


def _around(text: str, name: str) -> str:
    at = text.casefold().find(name.split()[-1 if name.startswith("The ") else 0][:5].casefold())
    return text[max(0, at - 50) : at + 90] if at >= 0 else text[:140]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--feed", type=Path, default=SHARED_FEED if SHARED_FEED.exists() else PACKAGED_FEED)
    ap.add_argument("--show", action="store_true", help="print every item with what was found and missed")
    ap.add_argument("--probe", type=int, default=0, metavar="N", help="also link untagged Reuters texts, show N")
    ap.add_argument("--speed", action="store_true", help="time linking on the Reuters texts against the baseline")
    args = ap.parse_args()

    feed = args.feed.read_bytes()
    truth, names = tagged(feed)
    items = untagged_items(feed)
    if len(items) != len(truth):
        raise SystemExit(f"{args.feed}: {len(items)} items parsed but {len(truth)} <item> elements")
    watchlist = Watchlist(tickers=tuple(Ticker(symbol, name) for symbol, name in sorted(names.items())))
    linker = TickerLinker(watchlist)

    started = time.perf_counter()
    found = [set(linker.link(item)) for item in items]
    elapsed = time.perf_counter() - started

    pairs = [(f, set(t)) for f, t in zip(found, truth, strict=True)]
    headlines = [p for p, t in zip(pairs, truth, strict=True) if len(t) <= ROUNDUP_MIN_TAGS]
    if args.show:
        for item, (f, t) in zip(items, pairs, strict=True):
            extra, missed = sorted(f - t), sorted(t - f)
            print(f"{item.title[:70]!r:74} found={sorted(f & t)} extra={extra} missed={missed[:8]}")
    print(f"feed: {args.feed.name}, {len(items)} items, {sum(len(t) for t in truth)} tags, watchlist {len(names)}")
    print(f"linking: {len(items)} items in {elapsed * 1000:.1f} ms")
    print(line(f"without round-ups ({len(headlines)} items)", *score(headlines)))
    print(line(f"all items ({len(pairs)})", *score(pairs)))
    if args.probe and REUTERS.exists():
        probe(linker, names, REUTERS, args.probe)
    if args.speed and REUTERS.exists():
        speed(linker, watchlist, REUTERS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
