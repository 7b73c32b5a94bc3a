"""Throughput of the compiled matcher vs the naive loop (each rule, each item, Python `re`).

1,000 rules: the default pack plus generated phrase and regex rules. 100,000 items: Reuters
titles and bodies cycled (when the shared corpus is there) mixed with synthetic headlines.
The naive baseline runs on a sample and is extrapolated (it is far too slow for 100k items);
the sample size is printed. Last line: `items_per_s=N ratio_vs_naive=R`.

    .venv/bin/python bench/match_bench.py [--items 100000] [--rules 1000] [--naive-sample 2000]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daemon.models import Item  # noqa: E402
from daemon.rules import RuleSet, load_rules  # noqa: E402
from daemon.rules import conditions as c  # noqa: E402
from daemon.rules.loader import (  # noqa: E402
    Source,
    normalize_form,
    parse_sources,
)

CORPUS = ROOT.parent / "shared" / "corpus" / "labeled" / "reuters21578_dev.jsonl"
WORDS = [
    "acme",
    "global",
    "holdings",
    "reports",
    "record",
    "quarter",
    "revenue",
    "growth",
    "cloud",
    "services",
    "merger",
    "agreement",
    "profit",
    "outlook",
    "shares",
    "rise",
    "fall",
    "analyst",
    "upgrade",
    "price",
    "target",
    "dividend",
    "buyback",
    "offering",
    "notes",
    "lawsuit",
    "settlement",
    "approval",
    "chief",
    "executive",
    "resigns",
    "board",
    "director",
    "guidance",
    "raised",
    "cut",
    "withdrawn",
    "semiconductor",
    "battery",
    "lithium",
    "bank",
    "insurance",
    "retail",
    "pharma",
    "trial",
    "data",
    "phase",
    "results",
    "data",
    "center",
]


def generated_rules(n: int, seed: int = 7) -> str:
    """Operator-like rules: a few phrases, a regex, an unless, spread over categories."""
    rnd = random.Random(seed)
    cats = ["earnings", "guidance", "m&a", "financing", "management", "legal-regulatory", "analyst", "other"]
    lines = ["rules:"]
    for i in range(n):
        w = rnd.sample(WORDS, 6)
        kind = i % 3
        lines.append(f"  - id: gen-{i}")
        lines.append(f"    category: {cats[i % len(cats)]}")
        lines.append("    when:")
        if kind == 0:
            lines.append(f'      headline: {{phrases: ["{w[0]} {w[1]}", "{w[2]} {i}", "{w[3]}x{i}"]}}')
        elif kind == 1:
            lines.append("      any:")
            lines.append(f'        - text: {{phrases: ["{w[0]} {w[1]} {w[2]}", "zq{i} {w[3]}"]}}')
            lines.append(f"        - headline: {{regex: '\\b{w[4]}\\b.*\\b{w[5]}{i % 10}\\d*\\b'}}")
        else:
            lines.append("      all:")
            lines.append(f'        - summary: {{phrases: ["{w[0]}", "{w[1]}"]}}')
            lines.append(f"        - text: {{regex: '\\b{w[2]} (of|for|in) {w[3]}\\b'}}")
            lines.append(f'    unless: {{headline: {{phrases: ["{w[5]} {i}"]}}}}')
    return "\n".join(lines) + "\n"


def make_items(n: int, body_chars: int = 500) -> list[Item]:
    """Feed-like items: a headline and a summary paragraph (RSS descriptions run ~200-600 chars)."""
    now = datetime.now(UTC)
    docs: list[tuple[str, str]] = []
    if CORPUS.exists():
        with CORPUS.open(encoding="utf-8") as fh:
            for line in fh:
                d = json.loads(line)
                if d.get("title") or d.get("body"):
                    docs.append((d.get("title", ""), d.get("body", "")[:body_chars]))
                if len(docs) >= 5000:
                    break
    rnd = random.Random(3)
    for _ in range(2000):
        title = " ".join(rnd.choice(WORDS) for _ in range(9)).title()
        body = " ".join(rnd.choice(WORDS) for _ in range(60))
        docs.append((title, body))
    rnd.shuffle(docs)
    return [
        Item(uid=str(i), source_id="bench", url="", title=t, summary=b, published_at=now)
        for i, (t, b) in enumerate(docs[i % len(docs)] for i in range(n))
    ]


class Naive:
    """The baseline of DESIGN.md §4: each rule, each item, Python `re`, tree walked per item."""

    def __init__(self, rs: RuleSet) -> None:
        self.rules = [r for r in rs.rules if not r.is_price]
        self.cache: dict[str, re.Pattern[str]] = {}

    def _re(self, pattern: str) -> re.Pattern[str]:
        p = self.cache.get(pattern)
        if p is None:
            p = self.cache[pattern] = re.compile(pattern, re.IGNORECASE)
        return p

    def _texts(self, field: str, item: Item) -> list[str]:
        t, s = " ".join(item.title.split()), " ".join(item.summary.split())
        return {"headline": [t], "summary": [s], "text": [t, s]}.get(field, [item.url])

    def ev(self, node: c.Node, item: Item) -> bool:
        if isinstance(node, c.All):
            return all(self.ev(k, item) for k in node.children)
        if isinstance(node, c.Any_):
            return any(self.ev(k, item) for k in node.children)
        if isinstance(node, c.Not):
            return not self.ev(node.child, item)
        if isinstance(node, c.Phrases):
            pats = [self._re(r"(?<!\w)" + re.escape(p) + r"(?!\w)") for p in node.phrases]
            return any(p.search(t) for p in pats for t in self._texts(node.field, item))
        if isinstance(node, c.AllWords):
            texts = self._texts(node.field, item)
            return all(any(self._re(r"\b" + re.escape(w) + r"\b").search(t) for t in texts) for w in node.words)
        if isinstance(node, c.Regex):
            return any(self._re(p).search(t) for p in node.patterns for t in self._texts(node.field, item))
        if isinstance(node, c.InSet):
            return item.source_id in node.values
        if isinstance(node, c.Filing):
            return bool(item.form) and normalize_form(item.form or "") in node.forms
        return False

    def match(self, item: Item) -> list[str]:
        out = []
        for r in self.rules:
            assert r.when is not None
            if self.ev(r.when, item) and not (r.unless is not None and self.ev(r.unless, item)):
                out.append(r.id)
        return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--naive-sample", type=int, default=2000)
    ap.add_argument("--body-chars", type=int, default=500, help="summary length cap (Reuters bodies cut)")
    args = ap.parse_args()

    pack = load_rules(ROOT / "rules")
    n_gen = max(0, args.rules - len(pack))
    gen = parse_sources([Source("<generated>", generated_rules(n_gen))])
    t0 = time.perf_counter()
    rs = RuleSet([*pack.rules, *gen])
    compile_s = time.perf_counter() - t0
    items = make_items(args.items, args.body_chars)
    print(f"rules: {len(rs)} ({len(pack)} default pack + {n_gen} generated), compiled in {compile_s:.2f}s")
    print(f"items: {len(items)} (Reuters titles + bodies cut to {args.body_chars} chars, cycled, plus synthetic)")

    rs.match_item(items[0])  # warm up
    t0 = time.perf_counter()
    n_matches = 0
    for it in items:
        n_matches += len(rs.match_item(it, ignore_scope=True))
    compiled_s = time.perf_counter() - t0
    compiled_ips = len(items) / compiled_s
    print(f"compiled: {len(items)} items in {compiled_s:.2f}s = {compiled_ips:,.0f} items/s ({n_matches} matches)")

    naive = Naive(rs)
    sample = items[: args.naive_sample]
    naive.match(sample[0])
    t0 = time.perf_counter()
    for it in sample:
        naive.match(it)
    naive_s = time.perf_counter() - t0
    naive_ips = len(sample) / naive_s
    print(
        f"naive (Python re, each rule each item): {len(sample)} items sampled in {naive_s:.2f}s = "
        f"{naive_ips:,.0f} items/s (extrapolated to {len(items)} items: {len(items) / naive_ips:.0f}s)"
    )
    # Agreement check on the sample: both must fire the same rules (modulo Unicode \w nuances).
    differ = sum(
        1
        for it in sample[:500]
        if sorted({m.rule_id for m in rs.match_item(it, ignore_scope=True)}) != sorted(naive.match(it))
    )
    print(f"agreement on 500 sampled items: {500 - differ}/500 identical rule sets")
    print(f"items_per_s={compiled_ips:.0f} ratio_vs_naive={compiled_ips / naive_ips:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
