"""Loader: all-or-nothing, every error located as path:line:col with a useful message."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from daemon.errors import RuleLoadError
from daemon.models import CATEGORIES, Severity
from daemon.rules import conditions as c
from daemon.rules import load_rules, load_rules_text, parse_duration
from daemon.rules.loader import RULE_KEYS

GOOD = """\
rules:
  - id: a
    category: earnings
    when: {headline: {phrases: [results]}}
"""


def col(text: str, line: int, needle: str) -> str:
    """`line:col` (1-based) of the first `needle` on that line, for exact position asserts."""
    return f"{line}:{text.splitlines()[line - 1].index(needle) + 1}"


def errors_of(text: str, path: str = "r.yaml") -> list[str]:
    with pytest.raises(RuleLoadError) as exc:
        load_rules_text(text, path)
    return [str(e) for e in exc.value.errors]


def test_good_rule_loads_with_defaults() -> None:
    rs = load_rules_text(GOOD, "pack.yaml")
    r = rs.get("a")
    assert r is not None and len(rs) == 1
    assert (r.title, r.category, r.severity, r.tickers, r.cooldown, r.is_price) == (
        "a",
        "earnings",
        Severity.MEDIUM,
        ("*",),
        None,
        False,
    )
    assert (r.path, r.line) == ("pack.yaml", 2)
    assert rs.get("nope") is None


def test_misspelled_rule_key_exact_position_and_hint() -> None:
    text = "rules:\n  - id: a\n    categroy: earnings\n    category: earnings\n    when: {headline: {phrases: [x]}}\n"
    errs = errors_of(text)
    assert errs == [
        "r.yaml:3:5: unknown rule key 'categroy' (did you mean 'category'?); expected one of: " + ", ".join(RULE_KEYS)
    ]


def test_misspelled_matcher_and_field() -> None:
    text = "rules:\n  - id: a\n    category: earnings\n    when:\n      headlin: {phrase: [x]}\n"
    errs = errors_of(text)
    assert len(errs) == 1
    assert errs[0].startswith("r.yaml:5:7: unknown field 'headlin' (did you mean 'headline'?)")
    text = "rules:\n  - id: a\n    category: earnings\n    when:\n      headline: {phrase: [x]}\n"
    errs = errors_of(text)
    assert errs[0].startswith("r.yaml:5:18: unknown matcher for `headline` 'phrase' (did you mean 'phrases'?)")


def test_bad_regex_reports_re2_reason_at_the_pattern() -> None:
    text = "rules:\n  - id: a\n    category: earnings\n    when:\n      headline: {regex: 'foo(?=bar)'}\n"
    errs = errors_of(text)
    assert len(errs) == 1
    assert errs[0].startswith("r.yaml:5:25: bad regex 'foo(?=bar)': RE2: ")
    assert "(?=" in errs[0] and "lookaround" in errs[0]
    text = "rules:\n  - id: a\n    category: other\n    when: {summary: {regex: ['ok', '(unclosed']}}\n"
    errs = errors_of(text)
    where = col(text, 4, "'(unclosed")
    assert errs == [f"r.yaml:{where}: bad regex '(unclosed': RE2: missing ): (unclosed"]


def test_unknown_category_and_severity() -> None:
    text = "rules:\n  - id: a\n    category: earning\n    severity: hgh\n    when: {headline: {phrases: [x]}}\n"
    errs = errors_of(text)
    assert errs[0].startswith("r.yaml:3:15: unknown category 'earning' (did you mean 'earnings'?)")
    assert ", ".join(CATEGORIES) in errs[0]
    assert errs[1].startswith("r.yaml:4:15: unknown severity 'hgh' (did you mean 'high'?)")


def test_all_errors_collected_and_nothing_loaded(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(
        "rules:\n  - id: a\n    category: earnings\n    when: {headline: {phrases: [x]}}\n"
        "  - id: b\n    category: earnings\n    cooldown: soon\n    when: {headline: {phrases: [x]}}\n"
    )
    with pytest.raises(RuleLoadError) as exc:
        load_rules(tmp_path)
    msgs = [str(e) for e in exc.value.errors]
    assert msgs == [
        f"{tmp_path / 'b.yaml'}:2:9: duplicate rule id 'a' (first defined at {tmp_path / 'a.yaml'}:2:9)",
        f"{tmp_path / 'b.yaml'}:7:15: `cooldown` must be a duration like 1d, 6h, 30m, got 'soon'",
    ]
    assert str(exc.value).splitlines() == msgs


def test_directory_skips_watchlist_and_sources(tmp_path: Path) -> None:
    (tmp_path / "pack.yml").write_text(GOOD)
    (tmp_path / "watchlist.yaml").write_text("tickers:\n  - symbol: KC\n")
    (tmp_path / "sources.yaml").write_text("sources: []\n")
    (tmp_path / "notes.txt").write_text("not yaml")
    rs = load_rules(tmp_path)
    assert [r.id for r in rs.rules] == ["a"]


def test_yaml_syntax_error_located() -> None:
    errs = errors_of("rules:\n  - id: a\n    when: {headline: [\n")
    assert len(errs) == 1 and errs[0].startswith("r.yaml:4:1: YAML syntax:")


def test_missing_required_keys_and_empty_lists() -> None:
    text = "rules:\n  - title: t\n    when: {headline: {phrases: []}}\n"
    assert errors_of(text) == [
        "r.yaml:2:5: rule is missing `id`",
        "r.yaml:2:5: rule is missing `category`",
        f"r.yaml:{col(text, 3, '[]')}: `phrases` must not be empty",
    ]


def test_duplicate_key_and_price_mixed_with_item_fields() -> None:
    errs = errors_of("rules:\n  - id: a\n    id: b\n    category: price\n    when: {price: {change_pct: {gte: 1}}}\n")
    assert errs == ["r.yaml:3:5: duplicate key 'id'"]
    errs = errors_of(
        "rules:\n  - id: a\n    category: price\n    when:\n"
        "      all: [{price: {change_pct: {gte: 1}}}, {headline: {phrases: [x]}}]\n"
    )
    assert errs == [
        "r.yaml:4:5: a rule tests either a price event or a news item: `price` cannot be mixed with headline"
    ]


def test_price_errors() -> None:
    text = (
        "rules:\n  - id: a\n    category: price\n    when:\n"
        "      price: {chnage_pct: {abs_gte: 5}, last: {above: 3}, gap_pct: {gte: lots}, window: often}\n"
    )
    errs = errors_of(text)
    assert errs[0].startswith(f"r.yaml:{col(text, 5, 'chnage')}: unknown price metric 'chnage_pct' (did you mean")
    assert errs[1].startswith(f"r.yaml:{col(text, 5, 'above')}: unknown comparison 'above'")
    assert errs[2] == f"r.yaml:{col(text, 5, 'lots')}: `gap_pct: gte` must be a number"
    assert errs[3] == f"r.yaml:{col(text, 5, 'often')}: `window` must be a duration like 1d, 5d, 1h, got 'often'"
    assert len(errs) == 4


def test_filing_items_are_read_as_written_and_validated() -> None:
    rs = load_rules_text(
        'rules:\n  - id: a\n    category: management\n    when: {filing: {items: ["5.10", "Item 2.02"]}}\n'
    )
    r = rs.get("a")
    assert r is not None and isinstance(r.when, c.Filing)
    assert r.when.items == frozenset({"5.10", "2.02"})
    text = "rules:\n  - id: a\n    category: management\n    when: {filing: {items: [five]}}\n"
    errs = errors_of(text)
    assert errs == [f"r.yaml:{col(text, 4, 'five')}: 8-K item must look like '2.02' (quote it in YAML), got 'five'"]


def test_disabled_rule_and_empty_file() -> None:
    rs = load_rules_text(GOOD.replace("    when:", "    enabled: false\n    when:"))
    assert len(rs) == 0
    assert len(load_rules_text("")) == 0
    assert len(load_rules_text("rules:\n")) == 0


def test_version_is_a_content_hash() -> None:
    a, b = load_rules_text(GOOD), load_rules_text(GOOD)
    assert a.version == b.version
    assert load_rules_text(GOOD.replace("results", "earnings")).version != a.version


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuleLoadError) as exc:
        load_rules([tmp_path / "nope.yaml"])
    assert str(exc.value) == f"{tmp_path / 'nope.yaml'}:1:1: no such file or directory"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1d", timedelta(days=1)),
        ("6h", timedelta(hours=6)),
        ("30m", timedelta(minutes=30)),
        ("1h30m", timedelta(minutes=90)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


def test_parse_duration_rejects() -> None:
    assert parse_duration("") is None and parse_duration("soon") is None and parse_duration("1d x") is None


def test_schema_matches_loader_vocabulary() -> None:
    """The shipped JSON Schema names the same keys the loader accepts, so editors don't drift."""
    schema = json.loads((Path(c.__file__).parent / "schema.json").read_text())
    defs = schema["$defs"]
    assert set(defs["rule"]["properties"]) == set(RULE_KEYS)
    assert defs["rule"]["properties"]["category"]["enum"] == list(CATEGORIES)
    assert set(defs["condition"]["properties"]) == set(c.FIELDS) | set(c.COMBINATORS)
    assert set(defs["price"]["properties"]) == set(c.PRICE_METRICS) | {"window"}
    assert set(defs["comparison"]["properties"]) == set(c.COMPARISONS)
