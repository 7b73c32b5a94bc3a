"""Compiled matcher semantics: boundaries, Unicode, combinators, fields, scope, price, explanations."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import re2

from daemon.models import Item, PriceEvent, Severity
from daemon.rules import RuleSet, load_rules_text, watched_scope
from daemon.rules.regex_literals import required_literals

NOW = datetime(2025, 3, 1, tzinfo=UTC)


def item(title: str, summary: str = "", **kw: object) -> Item:
    return Item(
        uid="u1",
        source_id=str(kw.pop("source_id", "wire")),
        url=str(kw.pop("url", "")),
        title=title,
        summary=summary,
        published_at=NOW,
        **kw,  # type: ignore[arg-type]
    )


def rules(body: str) -> RuleSet:
    return load_rules_text("rules:\n" + body)


def ids(rs: RuleSet, it: Item) -> list[str]:
    return [m.rule_id for m in rs.match_item(it)]


def one(when: str, category: str = "other") -> RuleSet:
    return rules(f"  - id: r\n    category: {category}\n    when: {when}\n")


def test_phrases_are_whole_words_case_insensitive() -> None:
    rs = one("{headline: {phrases: [merger, cut]}}")
    assert ids(rs, item("MERGER talks")) == ["r"]
    assert ids(rs, item("Acme, merger.")) == ["r"]
    assert ids(rs, item("Two mergers")) == []
    assert ids(rs, item("Cutting costs")) == []
    assert ids(rs, item("Acme to cut jobs")) == ["r"]
    assert ids(rs, item("Shortcut")) == []


def test_multiword_phrase_spans_line_breaks() -> None:
    rs = one("{summary: {phrases: [net income]}}")
    assert ids(rs, item("x", "rose as net\n    income grew")) == ["r"]
    assert ids(rs, item("x", "net incomes")) == []


def test_unicode_words_and_cjk() -> None:
    rs = one("{text: {phrases: [café, 金山云, société générale]}}")
    assert ids(rs, item("Le Café ouvre")) == ["r"]
    assert ids(rs, item("Les cafés ouvrent")) == []
    assert ids(rs, item("x", "金山云发布第三季度业绩")) == ["r"]  # no spaces in Chinese: no boundary asked
    assert ids(rs, item("SOCIÉTÉ GÉNÉRALE results")) == ["r"]
    assert ids(rs, item("Sociétés générales")) == []
    rs = one("{headline: {phrases: [naïve]}}")
    assert ids(rs, item("naïveté")) == []


def test_all_words_any_order_in_either_field() -> None:
    rs = one("{text: {all_words: [raises, outlook]}}")
    assert ids(rs, item("Acme raises", "full-year outlook")) == ["r"]
    assert ids(rs, item("Acme raises prices")) == []
    rs = one("{headline: {all_words: [raises, outlook]}}")
    assert ids(rs, item("Acme raises", "full-year outlook")) == []


def test_regex_case_insensitive_by_default_and_case_sensitive_opt_in() -> None:
    rs = one(r"""{headline: {regex: '\b(first|second)[- ]quarter\b.*\bresults\b'}}""")
    assert ids(rs, item("SECOND-QUARTER 2024 RESULTS")) == ["r"]
    assert ids(rs, item("quarter results, first")) == []
    rs = one(r"""{headline: {regex: '(?-i)\bNYSE\b'}}""")
    assert ids(rs, item("Listed on NYSE")) == ["r"]
    assert ids(rs, item("listed on nyse")) == []


def test_regex_without_literal_atoms() -> None:
    rs = one(r"""{summary: {regex: '\b\d{3}\.\d\b'}}""")
    assert ids(rs, item("x", "up to 123.4 mln")) == ["r"]
    assert ids(rs, item("x", "up to 12.4 mln")) == []


def test_any_all_not_and_unless() -> None:
    rs = rules(
        "  - id: r\n    category: m&a\n    when:\n      all:\n"
        "        - headline: {phrases: [sale, offer]}\n"
        "        - any:\n            - summary: {phrases: [agreed to sell]}\n"
        "            - summary: {regex: 'tender offer'}\n"
        "        - not: {source: {in: [rumours]}}\n"
        "    unless: {headline: {phrases: [public offering]}}\n"
    )
    assert ids(rs, item("Acme sale", "Acme agreed to sell its unit")) == ["r"]
    assert ids(rs, item("Acme offer", "launched a tender offer")) == ["r"]
    assert ids(rs, item("Acme sale", "nothing here")) == []
    assert ids(rs, item("Acme sale", "agreed to sell", source_id="rumours")) == []
    assert ids(rs, item("Acme public offering, sale", "agreed to sell")) == []


def test_rule_without_literals_is_always_evaluated() -> None:
    rs = one("{not: {headline: {phrases: [boring]}}}")
    assert ids(rs, item("anything")) == ["r"]
    assert ids(rs, item("boring")) == []


def test_filing_forms_amendments_prefix_and_items() -> None:
    rs = rules(
        "  - id: e\n    category: earnings\n    when: {filing: {form: ['8-K'], items: ['2.02']}}\n"
        "  - id: p\n    category: financing\n    when: {filing: {form: ['424B*']}}\n"
        "  - id: amend\n    category: filing\n    when: {filing: {form: ['10-K/A']}}\n"
    )
    assert ids(rs, item("8-K", form="8-K", filing_items=("2.02", "9.01"))) == ["e"]
    assert ids(rs, item("8-K/A", form="8-K/A", filing_items=("2.02",))) == ["e"]
    assert ids(rs, item("8-K", form="8-K", filing_items=("5.02",))) == []
    assert ids(rs, item("10-K", form="10-K")) == []
    assert ids(rs, item("424B3", form="424B3")) == ["p"]
    assert ids(rs, item("10-K/A", form="10-k/a")) == ["amend"]
    assert ids(rs, item("no form")) == []


def test_source_url_and_tickers_fields() -> None:
    rs = rules(
        "  - id: s\n    category: other\n    when: {source: {in: [edgar]}}\n"
        "  - id: u\n    category: other\n    when: {url: {phrases: [sec.gov]}}\n"
        "  - id: t\n    category: other\n    when: {tickers: {in: [kc, AAPL]}}\n"
    )
    assert ids(rs, item("x", source_id="edgar")) == ["s"]
    assert ids(rs, item("x", url="https://www.sec.gov/Archives/x")) == ["u"]
    assert ids(rs, item("x", url="https://notsec.gov.example/")) == []
    assert [m.rule_id for m in rs.match_item(item("x", tickers=("KC",)))] == ["t"]


def test_ticker_scope_one_match_per_ticker_in_scope() -> None:
    rs = rules(
        "  - id: all\n    category: other\n    when: {headline: {phrases: [news]}}\n"
        "  - id: kc\n    category: other\n    tickers: [KC]\n    when: {headline: {phrases: [news]}}\n"
    )
    got = [(m.rule_id, m.ticker) for m in rs.match_item(item("news", tickers=("KC", "MSFT")))]
    assert got == [("all", "KC"), ("all", "MSFT"), ("kc", "KC")]
    # No tickers on the item: one unscoped match for "*" rules; named-ticker rules need their ticker.
    assert [(m.rule_id, m.ticker) for m in rs.match_item(item("news"))] == [("all", "")]
    assert [(m.rule_id, m.ticker) for m in rs.match_item(item("news"), ignore_scope=True)] == [("all", ""), ("kc", "")]
    r = rs.get("kc")
    assert r is not None and watched_scope(r, ["KC", "MSFT"]) == ("KC",)


def test_match_fields_and_explanation_spans() -> None:
    rs = rules(
        "  - id: r\n    title: Results\n    category: earnings\n    severity: high\n    when:\n      any:\n"
        "        - headline: {phrases: [financial results]}\n"
        r"        - summary: {regex: '\bshr \d+ cts\b'}"
        "\n"
        "        - filing: {form: ['8-K']}\n"
    )
    title = "Kingsoft Cloud Reports Third Quarter 2024 Unaudited Financial\n  Results"
    summary = "Highlights:\n    Shr 22 cts vs 15 cts"
    (m,) = rs.match_item(item(title, summary))
    assert (m.rule_id, m.rule_title, m.category, m.severity, m.ticker) == (
        "r",
        "Results",
        "earnings",
        Severity.HIGH,
        "",
    )
    by_field = {e.field: e for e in m.explanations}
    assert set(by_field) == {"headline", "summary"}  # the filing leaf was false: no explanation
    h, s = by_field["headline"], by_field["summary"]
    assert title[h.start : h.end] == h.text == "Financial\n  Results"
    assert summary[s.start : s.end] == s.text == "Shr 22 cts"
    assert h.as_dict() == {"rule": "r", "field": "headline", "text": h.text, "start": h.start, "end": h.end}


def test_unicode_explanation_offsets() -> None:
    rs = one("{text: {phrases: [金山云]}}")
    summary = "公司公告：金山云发布业绩"
    (m,) = rs.match_item(item("x", summary))
    (e,) = m.explanations
    assert (e.field, e.text, summary[e.start : e.end]) == ("summary", "金山云", "金山云")


def test_price_rules() -> None:
    rs = rules(
        "  - id: move\n    category: price\n    severity: critical\n    cooldown: 1d\n"
        "    when: {price: {change_pct: {abs_gte: 5}, window: 1d}}\n"
        "  - id: kc-vol\n    category: price\n    tickers: [KC]\n"
        "    when:\n      any:\n        - price: {volume_ratio: {gte: 3}}\n        - price: {high_days: {gte: 250}}\n"
        "  - id: news\n    category: other\n    when: {headline: {phrases: [x]}}\n"
    )
    assert [r.id for r in rs.price_rules()] == ["move", "kc-vol"]
    down = PriceEvent("MSFT", NOW, {"change_pct": -6.2, "volume_ratio": 4.0}, "1d")
    (m,) = rs.match_price(down)
    assert (m.rule_id, m.ticker, m.severity) == ("move", "MSFT", Severity.CRITICAL)
    assert m.explanations[0].field == "price" and "change_pct=-6.20" in m.explanations[0].text
    assert rs.match_price(PriceEvent("MSFT", NOW, {"change_pct": 4.9}, "1d")) == []
    assert rs.match_price(PriceEvent("MSFT", NOW, {"change_pct": 7.0}, "5d")) == []
    assert rs.match_price(PriceEvent("MSFT", NOW, {}, "1d")) == []
    got = [m.rule_id for m in rs.match_price(PriceEvent("KC", NOW, {"change_pct": 1.0, "high_days": 300}, "1d"))]
    assert got == ["kc-vol"]
    assert rs.match_item(item("x y")) != [] and all(not m.rule_id.startswith("move") for m in rs.match_item(item("x")))


# ---------------------------------------------------------------- compiled-matcher internals
# The matcher skips work (regex literal gate, filing rules by form, explanations on demand);
# these check that skipping never changes what fires or what is explained.


def test_required_literals_examples() -> None:
    # the set whose shortest string is longest wins: " quarter" / "-quarter" (8) over "results" (7)
    assert required_literals(r"\b(Q[1-4]|first|second)[- ]quarter\b.*\bresults\b") == (
        frozenset({" quarter", "-quarter"}),
    )
    assert required_literals(r"(?-i)\bNYSE\b") == (frozenset({"nyse"}),)
    assert required_literals(r"\bstakes?\b") == (frozenset({"stake"}),)
    assert required_literals(r"\b\d{3}\.\d\b") is None  # nothing literal: always run
    assert required_literals(r"ab|c") is None  # one branch has no 3-character string
    assert required_literals(r"x\Qa.b\E") is None  # syntax not modelled: always run
    assert required_literals(r"a{,3}bcd") == (frozenset({"a{,3}bcd"}),)  # RE2 reads {,3} literally
    assert required_literals(r"\?\s*$") == (frozenset({"?"}),)  # a rare sign is selective enough


def _random_regex(rnd: random.Random, depth: int = 0) -> str:
    atoms = ["net", "loss", "qtr", "a", "b", " ", r"\d", r"\w", ".", "[- ]", "[^,]", r"\b", "^", "$", "x", r"\."]
    atoms.append("(?i)")
    parts = []
    for _ in range(rnd.randint(1, 4)):
        if depth < 2 and rnd.random() < 0.3:
            alts = [_random_regex(rnd, depth + 1) for _ in range(rnd.randint(1, 3))]
            atom = "(" + rnd.choice(["", "?:", "?P<g>"]) + "|".join(alts) + ")"
        else:
            atom = rnd.choice(atoms)
        if atom not in (r"\b", "^", "$", "(?i)") and rnd.random() < 0.3:
            atom += rnd.choice(["?", "*", "+", "{2}", "{0,3}", "{1,}", "??"])
        parts.append(atom)
    return "".join(parts)


def test_required_literals_never_miss_a_match() -> None:
    """Every text a regex matches contains a string of each required set (else a match is lost)."""
    rnd = random.Random(11)
    alphabet = ["net", "loss", "qtr", "a", "b", "x", " ", "-", ",", ".", "1", "NET", "Loss", "ab"]
    texts = ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 12))) for _ in range(300)]
    checked = 0
    for _ in range(400):
        pattern = _random_regex(rnd)
        try:
            rx = re2.compile("(?i)" + pattern)
        except re2.error:
            continue
        sets = required_literals(pattern)
        if sets is None:
            continue
        for t in texts:
            if rx.search(t) is not None:
                checked += 1
                low = t.lower()
                assert all(any(s in low for s in req) for req in sets), (pattern, t, sets)
    assert checked > 100  # the generator does produce matching pairs


def test_regex_folds_long_s_like_re2() -> None:
    # RE2 (?i) folds s with U+017F; the literal gate sees lowercased text, where ſ stays ſ.
    rs = one(r"""{headline: {regex: 'sales rose'}}""")
    assert ids(rs, item("ſales rose 5 pct")) == ["r"]
    assert ids(rs, item("SALES ROSE")) == ["r"]
    assert ids(rs, item("sales fell")) == []


def test_regex_gate_per_field() -> None:
    # The literal is in the summary, the regex wants the headline: the headline must not fire.
    rs = one(r"""{headline: {regex: '\bnet loss\b'}}""")
    assert ids(rs, item("Acme results", "net loss widened")) == []
    assert ids(rs, item("Acme net loss", "widened")) == ["r"]
    rs = one(r"""{text: {regex: '\bnet loss\b'}}""")
    assert ids(rs, item("Acme results", "net\n  loss widened")) == ["r"]


def test_filing_rules_looked_up_by_form_still_combine() -> None:
    rs = rules(
        "  - id: any-form\n    category: filing\n    when:\n      any:\n"
        "        - filing: {form: ['10-K']}\n        - filing: {form: ['20-F']}\n"
        "  - id: form-and-text\n    category: filing\n    when:\n      all:\n"
        "        - filing: {form: ['8-K']}\n        - not: {headline: {phrases: [amendment]}}\n"
        "  - id: items-only\n    category: filing\n    when: {filing: {items: ['5.02']}}\n"
    )
    assert ids(rs, item("annual report", form="20-F")) == ["any-form"]
    assert ids(rs, item("annual report", form="10-K/A")) == ["any-form"]
    assert ids(rs, item("current report", form="8-K")) == ["form-and-text"]
    assert ids(rs, item("amendment", form="8-K")) == []
    assert ids(rs, item("x", form="8-K", filing_items=("5.02",))) == ["form-and-text", "items-only"]
    assert ids(rs, item("x", filing_items=("5.02",))) == ["items-only"]
    assert ids(rs, item("annual report")) == []
    # the same form again comes from the lookup cache and must answer the same
    assert ids(rs, item("annual report", form="20-F")) == ["any-form"]


def test_one_explanation_per_field_first_match() -> None:
    rs = one(
        "{any: [{summary: {phrases: [net loss, shr]}}, {summary: {regex: '\\bcts\\b'}}, {headline: {phrases: [loss]}}]}"
    )
    it = item("Acme loss", "Café: shr 5 cts, net loss 3 mln; net loss")
    (m,) = rs.match_item(it)
    got = [(e.field, e.text, e.start) for e in m.explanations]
    assert got == [("summary", "shr", 6), ("headline", "loss", 5)]
    rs = one("{summary: {regex: '\\bcts\\b'}}")
    (m,) = rs.match_item(it)
    assert [(e.field, e.text, e.start, e.end) for e in m.explanations] == [("summary", "cts", 12, 15)]


def test_explanations_only_when_asked() -> None:
    rs = rules(
        "  - id: r\n    category: earnings\n    when:\n      any:\n"
        "        - headline: {phrases: [net loss]}\n"
        r"        - summary: {regex: '\bshr \d+ cts\b'}"
        "\n"
    )
    it = item("Acme net loss widens", "Société: shr 5 cts vs 7 cts")
    (plain,) = rs.match_item(it, explain=False)
    (full,) = rs.match_item(it)
    assert (plain.rule_id, plain.ticker, plain.explanations) == ("r", "", ())
    assert full.rule_id == "r"
    got = {(e.field, e.text, e.start, e.end) for e in full.explanations}
    assert got == {("headline", "net loss", 5, 13), ("summary", "shr 5 cts", 9, 18)}
    # explaining after matching without explanations gives the same answer
    assert rs.match_item(it) == [full]


def test_regex_explanation_offsets_in_uncollapsed_non_ascii_text() -> None:
    rs = one(r"""{summary: {regex: '\bnet (income|loss)\b'}}""")
    summary = "Café  Société:\n   net\n  income rose"
    (m,) = rs.match_item(item("x", summary))
    (e,) = m.explanations
    assert summary[e.start : e.end] == e.text == "net\n  income"


def test_lead_length_cuts_at_a_word_boundary() -> None:
    from daemon.rules.textnorm import LEAD_CHARS, lead_length

    assert LEAD_CHARS == 300
    assert lead_length("short summary") == len("short summary")
    assert lead_length("a" * 300) == 300  # exactly 300: its own lead
    # the space at position 300 ends the lead right there
    assert lead_length("a" * 300 + " tail") == 300
    # otherwise the last space at or before 300; the word across the cut is left out
    text = "word " * 59 + "acquisition"  # 295 + 11 chars: "acquisition" runs past 300
    assert lead_length(text) == 294
    assert lead_length("金" * 400) == 300  # no space at all: cut at 300 characters


def test_lead_phrases_all_words_and_regex() -> None:
    rs = rules(
        "  - id: p\n    category: m&a\n    when: {lead: {phrases: [agreed to acquire]}}\n"
        "  - id: w\n    category: m&a\n    when: {lead: {all_words: [acquire, agreed]}}\n"
        r"  - id: x"
        "\n    category: m&a\n    when: {lead: {regex: '\\bacquire\\S*$'}}\n"
    )
    up_front = "Acme said it agreed to acquire Beta for 10 mln dlrs."
    assert sorted(ids(rs, item("Acme", up_front))) == ["p", "w"]
    assert ids(rs, item("Acme", "Acme agreed to acquire")) == ["p", "w", "x"]  # `$`: end of the lead
    # past the lead: not in it, though in the summary
    late = "word " * 70 + "Acme agreed to acquire Beta."
    assert ids(rs, item("Acme", late)) == []
    # a phrase across the cut is not in the lead; `$` matches where the lead ends
    across = "word " * 57 + "agreed to acquire"  # starts at 285, ends at 302
    assert ids(rs, item("Acme", across)) == []
    ends = "word " * 55 + "x agreed to acquirement tail"  # the lead ends after "acquirement"
    assert ids(rs, item("Acme", ends)) == ["x"]


def test_lead_in_text_without_spaces_is_matched_on_its_own() -> None:
    rs = one("{lead: {phrases: [收购]}}", "m&a")
    assert ids(rs, item("x", "公" * 298 + "收购" + "司" * 50)) == ["r"]
    assert ids(rs, item("x", "公" * 299 + "收购" + "司" * 50)) == []  # across the 300-character cut


def test_lead_explanation_names_the_field_and_gives_summary_offsets() -> None:
    rs = one("{all: [{lead: {phrases: [tender offer]}}, {lead: {regex: '\\bbid\\b'}}]}", "m&a")
    summary = "Acme  Société\n launched a tender\n   offer, a bid for Beta."
    (m,) = rs.match_item(item("Acme bid", summary))
    # one explanation per field: the first true leaf there, at its first match
    (e,) = m.explanations
    assert (e.field, e.text, summary[e.start : e.end]) == ("lead", "tender\n   offer", "tender\n   offer")
    rs = one("{lead: {regex: ['\\bbid\\b', 'offer']}}", "m&a")
    (m,) = rs.match_item(item("Acme bid", summary))
    (e,) = m.explanations
    assert (e.field, e.text, e.start, e.end) == ("lead", "bid", 45, 48)
