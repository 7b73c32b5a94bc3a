"""The matcher's fast paths give the answers of the plain way of computing them.

Regex spans come from the run that decided the regex matched (not a second search), phrase
spans from the Aho-Corasick hit; both are checked here against a search of the collapsed
field done from scratch, on ASCII, Unicode, collapsed-whitespace and CJK text.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from datetime import UTC, datetime

import re2

from daemon.models import Item
from daemon.rules import RuleSet, load_rules_text
from daemon.rules.loader import regex_for_matching
from daemon.rules.matcher import _raw, _SearchAdapter, _span_options
from daemon.rules.textnorm import collapse, lower_same_length, to_original

NOW = datetime(2025, 3, 1, tzinfo=UTC)

TEXTS = [
    "Acme net income rose 5 pct; shr 22 cts vs 15 cts",
    "Café  Société:\n   net\n  income rose, shr 5 cts vs 7 cts",
    "  Société Générale:\tNET\u00a0INCOME up; Shr 3 cts  ",
    "公司公告：金山云发布业绩 net income 中文 shr 9 cts vs 8 cts",
    "Ünïcödé — net loss of 3 mln dlrs, revs 10 mln vs 9 mln; ｆｕｌｌ width net income",
    "No match here at all",
    "ſales rose; net\n\n income; the İstanbul net income",
]


def item(title: str, summary: str) -> Item:
    return Item(uid="u", source_id="wire", url="", title=title, summary=summary, published_at=NOW)


def test_search_adapter_answers_like_the_low_level_match() -> None:
    # The public-search stand-in must agree with the pybind Match() it replaces.
    rx = re2.compile(regex_for_matching(r"\bnet (income|loss)\b"), _span_options())
    raw, adapter = _raw(rx), _SearchAdapter(rx)
    assert raw is not adapter
    for text in TEXTS:
        data = collapse(text).encode()
        got = adapter.Match(None, data, 0, len(data))
        assert got[0] == raw.Match(re2._Anchor.UNANCHORED, data, 0, len(data))[0]
    assert adapter.Match(None, b"nothing", 0, 7) == [(-1, -1)]


def _expected_regex_span(pattern: str, original: str) -> tuple[str, int, int] | None:
    """First match in the collapsed field (str API: character offsets), mapped to the original."""
    c = collapse(original)
    m = re2.compile(regex_for_matching(pattern)).search(c)
    if m is None:
        return None
    start, end = to_original(original, m.start(), m.end(), c)
    return original[start:end], start, end


def _per_field(
    expect: Callable[[str, str], tuple[str, int, int] | None], what: str, title: str, summary: str
) -> dict[str, tuple[str, int, int]]:
    got = {"headline": expect(what, title), "summary": expect(what, summary)}
    return {f: s for f, s in got.items() if s is not None}


def test_regex_spans_from_the_matching_run_equal_a_fresh_search() -> None:
    patterns = [r"\bnet (income|loss)\b", r"\bshr \d+ cts\b", r"\brevs [\d.]+ mln vs\b", r"sales rose", r"\bcts\b"]
    for pattern in patterns:
        rs = load_rules_text(
            "rules:\n  - id: r\n    category: other\n    when:\n"
            f"      any: [{{summary: {{regex: '{pattern}'}}}}, {{headline: {{regex: '{pattern}'}}}}]\n"
        )
        for title in TEXTS:
            for summary in TEXTS:
                got = rs.match_item(item(title, summary))
                want = _per_field(_expected_regex_span, pattern, title, summary)
                if not want:
                    assert got == [], (pattern, title, summary)
                    continue
                (m,) = got
                spans = {e.field: (e.text, e.start, e.end) for e in m.explanations}
                assert spans == want, (pattern, title, summary)


def _expected_phrase_span(phrase: str, original: str) -> tuple[str, int, int] | None:
    """First whole-word occurrence (ASCII-word phrases here), found with Python `re`."""
    c = collapse(original)
    low = lower_same_length(c)
    m = re.search(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)", low)
    if m is None:
        return None
    start, end = to_original(original, m.start(), m.end(), c)
    return original[start:end], start, end


def test_phrase_spans_from_automaton_hits_equal_a_fresh_search() -> None:
    for phrase in ["net income", "shr", "income", "net loss"]:
        rs = load_rules_text(f"rules:\n  - id: r\n    category: other\n    when: {{text: {{phrases: ['{phrase}']}}}}\n")
        for title in TEXTS:
            for summary in TEXTS:
                got = rs.match_item(item(title, summary))
                want = _per_field(_expected_phrase_span, phrase, title, summary)
                if not want:
                    assert got == [], (phrase, title, summary)
                    continue
                (m,) = got
                assert {e.field: (e.text, e.start, e.end) for e in m.explanations} == want, (phrase, title, summary)


def test_cjk_phrase_span_inside_a_sentence() -> None:
    rs = load_rules_text("rules:\n  - id: r\n    category: other\n    when: {summary: {phrases: [金山云]}}\n")
    summary = "公司公告：\n  金山云发布业绩"
    (m,) = rs.match_item(item("x", summary))
    (e,) = m.explanations
    assert (e.text, summary[e.start : e.end]) == ("金山云", "金山云")


def test_many_regex_rules_agree_with_python_re_on_random_text() -> None:
    # Several regexes share literals, so a field runs a few of them; every fired rule and span
    # must be what a plain search finds, whichever regexes ran.
    words = ["net", "income", "loss", "shr", "cts", "vs", "revs", "mln", "sales", "rose", "5", "12.5", "café", "金山云"]
    patterns = [
        r"\bnet (income|loss)\b",
        r"\bshr [\d.]+ cts\b",
        r"\brevs [\d.]+ mln vs\b",
        r"\bsales rose\b",
        r"\bloss\b.*\bvs\b",
        r"\bcts vs [\d.]+",
    ]
    body = "".join(
        f"  - id: r{i}\n    category: other\n    when: {{text: {{regex: '{p}'}}}}\n" for i, p in enumerate(patterns)
    )
    rs: RuleSet = load_rules_text("rules:\n" + body)
    rnd = random.Random(11)
    fired = 0
    for _ in range(400):
        title = " ".join(rnd.choice(words) for _ in range(rnd.randrange(1, 8)))
        summary = rnd.choice([" ", "\n  ", " "]).join(rnd.choice(words) for _ in range(rnd.randrange(0, 30)))
        got = {m.rule_id: m for m in rs.match_item(item(title, summary))}
        for i, p in enumerate(patterns):
            want = _per_field(_expected_regex_span, p, title, summary)
            if not want:
                assert f"r{i}" not in got
                continue
            fired += 1
            spans = {e.field: (e.text, e.start, e.end) for e in got[f"r{i}"].explanations}
            assert spans == want, (p, title, summary)
    assert fired > 200
