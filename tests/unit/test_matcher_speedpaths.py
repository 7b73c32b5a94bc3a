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


def _filing(title: str, summary: str = "", form: str | None = None, items: tuple[str, ...] = ()) -> Item:
    return Item(
        uid="u",
        source_id="edgar",
        url="",
        title=title,
        summary=summary,
        published_at=NOW,
        form=form,
        filing_items=items,
    )


def test_any_of_phrases_and_filing_leaves_is_found_by_either() -> None:
    # Such a rule is looked up by its phrases, its forms and its item numbers rather than
    # evaluated on every item: each way in must still find it, and nothing else may.
    rs = load_rules_text(
        "rules:\n  - id: r\n    category: other\n    when:\n      any:\n"
        "        - text: {phrases: [restatement]}\n"
        "        - filing: {form: ['8-K'], items: ['4.02']}\n"
        "        - filing: {form: ['NT 10-K', '424B*']}\n"
        "        - filing: {items: ['4.01']}\n"
    )
    fire = [
        _filing("Acme announces restatement"),
        _filing("x", "a restatement of 2023 results"),
        _filing("x", form="8-K", items=("4.02",)),
        _filing("x", form="8-K/A", items=("9.01", "4.02")),
        _filing("x", form="nt 10-k"),
        _filing("x", form="424B3"),
        _filing("x", items=("4.01",)),
        _filing("x", form="10-Q", items=("4.01",)),
    ]
    quiet = [
        _filing("Acme restatements"),
        _filing("x", form="8-K", items=("5.02",)),
        _filing("x", form="8-K"),
        _filing("x", form="10-K"),
        _filing("x", items=("4.02",)),  # 4.02 counts only on an 8-K
        _filing("x"),
    ]
    for it in fire:
        assert [m.rule_id for m in rs.match_item(it)] == ["r"], it
    for it in quiet:
        assert rs.match_item(it) == [], it


def test_regex_next_to_a_phrase_runs_only_when_needed_and_still_explains() -> None:
    # The regex after a phrase that hit is not needed to fire the rule; the explanation of
    # another field still runs it and gives its span.
    rs = load_rules_text(
        "rules:\n  - id: r\n    category: other\n    when:\n      any:\n"
        "        - headline: {phrases: [net loss]}\n"
        r"        - text: {regex: '\bshr [\d.]+ cts\b'}"
        "\n  - id: gated\n    category: other\n    when:\n      all:\n"
        "        - headline: {phrases: [acme]}\n"
        r"        - summary: {regex: '\bshr [\d.]+ cts\b'}"
        "\n"
    )
    summary = "Société:\n  shr 5 cts vs 7 cts"
    got = {m.rule_id: m for m in rs.match_item(item("Zeta net loss", summary))}
    assert set(got) == {"r"}
    spans = {(e.field, e.text, e.start, e.end) for e in got["r"].explanations}
    assert spans == {("headline", "net loss", 5, 13), ("summary", "shr 5 cts", 11, 20)}
    assert summary[11:20] == "shr 5 cts"
    got = {m.rule_id: m for m in rs.match_item(item("Acme posts", summary))}
    assert set(got) == {"r", "gated"}
    assert [(e.field, e.text) for e in got["gated"].explanations] == [("headline", "Acme"), ("summary", "shr 5 cts")]
    assert rs.match_item(item("Acme posts", "shr five cts")) == []


def test_long_s_runs_every_regex_of_the_field() -> None:
    # With U+017F in the text the literal gate cannot be trusted: every regex may run.
    rs = load_rules_text(
        "rules:\n"
        + "".join(
            f"  - id: r{i}\n    category: other\n    when: {{text: {{regex: '{p}'}}}}\n"
            for i, p in enumerate([r"sales rose\b", r"shr [\d.]+ cts\b", r"\bnet loss\b"])
        )
    )
    got = {m.rule_id: m for m in rs.match_item(item("Acme ſales rose", "ſhr 5 cts; net loss"))}
    assert set(got) == {"r0", "r1", "r2"}
    assert [(e.field, e.text) for e in got["r0"].explanations] == [("headline", "ſales rose")]
    assert [(e.field, e.text) for e in got["r1"].explanations] == [("summary", "ſhr 5 cts")]
    # RE2's \b is ASCII: ſ is no word character, as a fresh search agrees
    assert _expected_regex_span(r"\bsales rose", "ſales rose") is None


def test_each_field_sees_only_its_own_phrases_and_literals() -> None:
    # Headline and summary are walked by separate automata holding only the keys their
    # leaves can use; a key shared by rules of both fields must be found in each.
    rs = load_rules_text(
        "rules:\n"
        "  - id: head\n    category: other\n    when: {headline: {phrases: [net loss, sale]}}\n"
        "  - id: body\n    category: other\n    when: {summary: {phrases: [net loss, merger]}}\n"
        "  - id: lead\n    category: other\n    when: {lead: {phrases: [merger]}}\n"
        "  - id: both\n    category: other\n    when: {text: {all_words: [sale, merger]}}\n"
        "  - id: hrx\n    category: other\n    when: {headline: {regex: '\\bshr \\d+ cts\\b'}}\n"
        "  - id: srx\n    category: other\n    when: {summary: {regex: '\\bdiv \\d+ cts\\b'}}\n"
    )

    def fired(title: str, summary: str) -> list[str]:
        return sorted(m.rule_id for m in rs.match_item(item(title, summary)))

    assert fired("Acme net loss", "no deal") == ["head"]
    assert fired("no deal", "Acme net loss") == ["body"]
    assert fired("Acme sale", "a merger") == ["body", "both", "head", "lead"]
    assert fired("merger", "sale") == ["both"]
    assert fired("shr 5 cts", "div 5 cts") == ["hrx", "srx"]
    assert fired("div 5 cts", "shr 5 cts") == []
    # phrases at the very end of the headline and start of the summary: the boundary is the field's
    assert fired("Acme sale", "merger") == ["body", "both", "head", "lead"]
    assert fired("Acme resale", "mergers") == []
    (m,) = [m for m in rs.match_item(item("Acme sale", "merger")) if m.rule_id == "both"]
    assert [(e.field, e.text, e.start) for e in m.explanations] == [("headline", "sale", 5), ("summary", "merger", 0)]


def test_to_original_maps_spans_of_any_whitespace_back() -> None:
    # ASCII text takes a bytes path, other text the `re` one: both must give spans whose text
    # collapses to the collapsed span and starts and ends on the same characters.
    pieces = ["a", "bc", "Café", "金山云", " ", "  ", "\n", "\n    ", "\t", "\r\n", "\x1c", "\xa0", "\u3000", "x.", "İ"]
    rnd = random.Random(3)
    checked = 0
    for _ in range(3000):
        original = "".join(rnd.choice(pieces) for _ in range(rnd.randrange(1, 20)))
        if rnd.random() < 0.5:
            original = "".join(ch for ch in original if ch.isascii())
        c = collapse(original)
        for _ in range(4):
            if not c:
                break
            start = rnd.randrange(len(c))
            end = rnd.randrange(start + 1, len(c) + 1)
            if c[start] == " " or c[end - 1] == " ":
                continue
            for collapsed in (None, c):
                o_start, o_end = to_original(original, start, end, collapsed)
                assert original[o_start] == c[start] and original[o_end - 1] == c[end - 1], (original, start, end)
                assert collapse(original[o_start:o_end]) == c[start:end], (original, start, end)
                checked += 1
    assert checked > 5000
