"""Throughput of the compiled matcher vs the naive loop (each rule, each item, Python `re`).

1,000 rules: the default pack plus generated phrase and regex rules. 100,000 items shaped like
feed items: a headline and a ~500-character summary, from the 15,000 Reuters-21578 stories of
the shared corpus (real newswire; bodies cut to 500 characters, line breaks kept), cycled.
`--synthetic-share` mixes in word-salad items built from the generated rules' own vocabulary,
a stress case (every item hits many rules), not a realistic one; default 0.

Timed with process CPU time, one core: the daemon path (explanations built for every match,
as the daemon stores them) is the headline figure; the `rules test` path (no explanations) is
printed too. The naive baseline runs on a sample and is extrapolated (it is far too slow for
100k items); both matchers must fire the same rules on every sampled item.
Last line: `items_per_s=N ratio_vs_naive=R` (N: daemon path).

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
from daemon.rules.textnorm import lead_length  # noqa: E402

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


def make_items(n: int, body_chars: int = 500, synthetic_share: float = 0.0) -> list[Item]:
    """Feed-like items: a headline and a summary paragraph (RSS descriptions run ~200-600 chars)."""
    now = datetime.now(UTC)
    docs: list[tuple[str, str]] = []
    if CORPUS.exists():
        with CORPUS.open(encoding="utf-8") as fh:
            for line in fh:
                d = json.loads(line)
                if d.get("title") and d.get("body"):
                    docs.append((d["title"], d["body"][:body_chars]))
    rnd = random.Random(3)
    n_syn = round(len(docs) * synthetic_share / (1 - synthetic_share)) if docs and synthetic_share < 1 else 2000
    if not docs or synthetic_share > 0:
        for _ in range(n_syn):
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
        lead = s[: lead_length(s)]
        return {"headline": [t], "summary": [s], "text": [t, s], "lead": [lead]}.get(field, [item.url])

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
    ap.add_argument("--synthetic-share", type=float, default=0.0, help="share of word-salad stress items, 0..1")
    args = ap.parse_args()

    pack = load_rules(ROOT / "rules")
    n_gen = max(0, args.rules - len(pack))
    gen = parse_sources([Source("<generated>", generated_rules(n_gen))])
    t0 = time.perf_counter()
    rs = RuleSet([*pack.rules, *gen])
    compile_s = time.perf_counter() - t0
    items = make_items(args.items, args.body_chars, args.synthetic_share)
    distinct = len({(i.title, i.summary) for i in items})
    mean_t = sum(len(i.title) for i in items) / len(items)
    mean_s = sum(len(i.summary) for i in items) / len(items)
    print(f"rules: {len(rs)} ({len(pack)} default pack + {n_gen} generated), compiled in {compile_s:.2f}s")
    print(
        f"items: {len(items)} ({distinct} distinct, cycled): Reuters-21578 headline + body cut to "
        f"{args.body_chars} chars (mean headline {mean_t:.0f} chars, summary {mean_s:.0f} chars), "
        f"synthetic share {args.synthetic_share:.0%}"
        + ("" if CORPUS.exists() else " -- shared corpus missing: synthetic items only")
    )

    rs.match_item(items[0])  # warm up
    figures: dict[bool, float] = {}
    for explain in (True, False):
        t0 = time.process_time()
        n_matches = 0
        for it in items:
            n_matches += len(rs.match_item(it, ignore_scope=True, explain=explain))
        cpu_s = time.process_time() - t0
        figures[explain] = len(items) / cpu_s
        what = "daemon path, explanations built" if explain else "rules-test path, no explanations"
        print(
            f"compiled ({what}): {len(items)} items in {cpu_s:.2f}s CPU = "
            f"{figures[explain]:,.0f} items/s ({n_matches} matches)"
        )

    naive = Naive(rs)
    sample = items[: args.naive_sample]
    naive.match(sample[0])
    t0 = time.process_time()
    naive_ids = [naive.match(it) for it in sample]
    naive_s = time.process_time() - t0
    naive_ips = len(sample) / naive_s
    print(
        f"naive (Python re, each rule each item): {len(sample)} items sampled in {naive_s:.2f}s CPU = "
        f"{naive_ips:,.0f} items/s (extrapolated to {len(items)} items: {len(items) / naive_ips:.0f}s)"
    )
    # Agreement on the whole sample: both must fire the same rules.
    differ = [
        it.uid
        for it, want in zip(sample, naive_ids, strict=True)
        if sorted({m.rule_id for m in rs.match_item(it, ignore_scope=True)}) != sorted(want)
    ]
    print(f"agreement with naive: {len(sample) - len(differ)}/{len(sample)} items fire identical rule sets")
    if differ:
        print(f"  differing items: {', '.join(differ[:10])}")
    compiled_ips = figures[True]
    print(f"items_per_s={compiled_ips:.0f} ratio_vs_naive={compiled_ips / naive_ips:.1f}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
