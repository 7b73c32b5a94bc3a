"""The default rule pack in rules/ loads and catches headlines of each theme (written for this test)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.models import Item, PriceEvent
from daemon.rules import RuleSet, load_rules

RULES_DIR = Path(__file__).resolve().parents[2] / "rules"
NOW = datetime(2025, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def pack() -> RuleSet:
    return load_rules(RULES_DIR)


def categories(rs: RuleSet, title: str, summary: str = "", **kw: object) -> set[str]:
    it = Item(uid="u", source_id="wire", url="", title=title, summary=summary, published_at=NOW, **kw)  # type: ignore[arg-type]
    return {m.category for m in rs.match_item(it)}


def test_pack_loads_with_every_category(pack: RuleSet) -> None:
    assert len(pack) >= 30
    assert {r.category for r in pack.rules} >= {
        "earnings", "guidance", "m&a", "financing", "capital-return", "management",
        "legal-regulatory", "analyst", "filing", "price",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("title", "summary", "category"),
    [
        ("Kingsoft Cloud Reports Third Quarter 2024 Unaudited Financial Results", "", "earnings"),
        ("ACME CORP <ACM> 2ND QTR NET", "Shr 22 cts vs 15 cts\n    Net 1.2 mln vs 980,000", "earnings"),
        ("Globex posts record quarterly profit as cloud sales jump", "", "earnings"),
        ("Initech raises full-year guidance after strong quarter", "", "guidance"),
        ("Umbrella Corp cuts 2025 outlook on weak demand", "", "guidance"),
        ("Hooli withdraws guidance citing tariff uncertainty", "", "guidance"),
        ("Acme to acquire Widget Co for $2.1 billion", "", "m&a"),
        ("Globex completes acquisition of Initech", "", "m&a"),
        ("Vandelay enters into merger agreement with Kramerica", "", "m&a"),
        ("Soylent launches tender offer for all shares of Tyrell", "", "m&a"),
        ("Wayne Enterprises prices $500 million public offering of common stock", "", "financing"),
        ("Stark Industries announces $1 billion convertible senior notes offering", "", "financing"),
        ("Cyberdyne receives Nasdaq minimum bid price delisting notice", "", "financing"),
        ("Acme declares quarterly dividend of $0.25 per share", "", "capital-return"),
        ("Globex board approves $5 billion share repurchase program", "", "capital-return"),
        ("Initech announces 3-for-1 stock split", "", "capital-return"),
        ("Hooli appoints new chief financial officer", "", "management"),
        ("Umbrella CEO to step down at year end", "", "management"),
        ("SEC opens investigation into Vandelay accounting", "", "legal-regulatory"),
        ("Shareholder class action lawsuit filed against Kramerica", "", "legal-regulatory"),
        ("Tyrell to restate financial statements for 2023", "", "legal-regulatory"),
        ("Soylent announces change in auditor", "", "legal-regulatory"),
        ("FDA approves Cyberdyne's new drug", "", "legal-regulatory"),
        ("Morgan Stanley upgrades Acme to overweight", "", "analyst"),
        ("Globex price target raised to $150 at Goldman", "", "analyst"),
    ],
)
def test_theme_headlines(pack: RuleSet, title: str, summary: str, category: str) -> None:
    assert category in categories(pack, title, summary)


@pytest.mark.parametrize(
    "title",
    [
        "Kingsoft Cloud to Announce Third Quarter 2024 Financial Results on November 19",
        "Acme to host conference call to discuss quarterly results",
        "Weather warm across the region",
    ],
)
def test_not_results(pack: RuleSet, title: str) -> None:
    """Announcing a results date is not results: only the low-severity results-date rule may fire."""
    it = Item(uid="u", source_id="wire", url="", title=title, summary="", published_at=NOW)
    assert {m.rule_id for m in pack.match_item(it) if m.category == "earnings"} <= {"results-date"}


@pytest.mark.parametrize(
    ("title", "summary", "category"),
    [
        # today's results headlines
        ("Microsoft beats by $0.12, beats on revenue", "", "earnings"),
        ("XYZ misses on EPS", "", "earnings"),
        ("Acme Q3 EPS tops estimates", "", "earnings"),
        ("Acme reports third quarter 2026 results", "", "earnings"),
        ("Globex posts record quarterly revenue", "", "earnings"),
        ("Oracle fiscal Q1 revenue rises 12%", "", "earnings"),
        ("Apple's quarterly profit falls short of expectations", "", "earnings"),
        # a company's own profit forecast
        (
            "Acme sees stronger 2026",
            "Acme Corp said it expects earnings per share to rise at least 15 pct this year.",
            "earnings",
        ),
        # payouts in words, bonus issues, buybacks
        ("Acme sets quarterlies", "Qtly div common 2-1/2 cts vs 2-1/2 cts prior", "capital-return"),
        ("Globex plans four-for-one bonus issue", "", "capital-return"),
        ("Acme buys back $2 billion of stock", "", "capital-return"),
        # deals as they move
        ("Hooli in talks to buy Pied Piper", "", "m&a"),
        ("Initech explores sale of cloud unit", "", "m&a"),
        ("Tyrell receives unsolicited buyout offer", "", "m&a"),
        ("Globex raises offer for Initech to $50 a share", "", "m&a"),
        ("Vulcan offers five dlrs a share for Jones", "", "m&a"),
        ("Acme board to meet on Globex offer", "", "m&a"),
        ("Crazy Eddie adopts shareholder rights plan", "", "m&a"),
        ("Activist fund takes stake in Acme", "", "m&a"),
        (
            "Judge to rule on Burlington in several days",
            "A federal judge said he will decide whether to stop the takeover of Burlington by Samjens.",
            "m&a",
        ),
    ],
)
def test_modern_and_indirect_headlines(pack: RuleSet, title: str, summary: str, category: str) -> None:
    assert category in categories(pack, title, summary)


@pytest.mark.parametrize(
    ("title", "summary", "category"),
    [
        # previews, scheduling and market chatter are not results
        ("What to look for in Microsoft's Q1 earnings today", "", "earnings"),
        ("Notable earnings after Thursday's close", "", "earnings"),
        ("Microsoft's Earnings Expectations", "", "earnings"),
        ("Microsoft earnings preview: Azure in focus", "", "earnings"),
        ("Stocks rise as earnings season kicks off", "", "earnings"),
        ("Acme Q3 earnings call transcript", "", "earnings"),
        ("Can Nvidia beat earnings expectations again?", "", "earnings"),
        # a charge alone is restructuring news; statistics and trials are not company results
        ("FedEx to take up to 575 million charge as it starts voluntary buyouts", "", "earnings"),
        ("German net currency reserves rise", "", "earnings"),
        ("Canada 4th qtr GDP rose 1.1 pct", "", "earnings"),
        ("Biotech reports positive phase 3 trial results", "", "earnings"),
        ("Miner has encouraging drill results", "", "earnings"),
        # "split" alone, bond buybacks
        ("Manila officials split over debt strategy", "", "capital-return"),
        ("Utility unit to buy back bonds", "", "capital-return"),
        ("Walmart opens new distribution center", "", "capital-return"),
        # filings, commodities, central banks and securities are not deals
        ("SC 13G - Statement of Beneficial Ownership by Certain Investors", "", "m&a"),
        ("Bank of Japan buys dollars", "", "m&a"),
        ("India buys palm olein at tender", "", "m&a"),
        ("Acme sells $1 billion of bonds", "", "m&a"),
        ("Acme agrees to buy 10 Boeing aircraft", "", "m&a"),
        ("CCC accepts bonus bid on cattle for Egypt", "", "m&a"),
        ("Acme extends exchange offer for its notes", "", "m&a"),
    ],
)
def test_not_this_theme(pack: RuleSet, title: str, summary: str, category: str) -> None:
    assert category not in categories(pack, title, summary)


def test_deal_language_counts_in_the_lead_only(pack: RuleSet) -> None:
    """ma-deal-confirmed: a weak headline word needs deal language in the story's lead."""
    title = "Acme in talks with Beta"
    up_front = "Acme Corp said it agreed in principle to buy Beta Inc for 40 mln dlrs in cash."
    assert "m&a" in categories(pack, title, up_front)
    filler = "Acme Corp said trading in its shares was active on Monday and volumes were high. " * 5
    assert len(filler) > 300
    assert "m&a" not in categories(pack, title, filler + up_front)
    # commodity stories are not deals, when the lead says so
    assert "m&a" not in categories(pack, title, "Acme said it agreed to buy 20,000 tonnes of wheat.")
    (m,) = [m for m in pack.match_item(Item(uid="u", source_id="w", url="", title=title, summary=up_front,
                                             published_at=NOW)) if m.rule_id == "ma-deal-confirmed"]  # fmt: skip
    assert {(e.field, e.text) for e in m.explanations} == {("headline", "talks"), ("lead", "agreed in principle")}


@pytest.mark.parametrize(
    ("form", "items", "category"),
    [
        ("8-K", ("2.02", "9.01"), "earnings"),
        ("8-K", ("5.02",), "management"),
        ("8-K", ("4.02",), "legal-regulatory"),
        ("8-K", ("4.01",), "legal-regulatory"),
        ("10-K", (), "filing"),
        ("10-Q", (), "filing"),
        ("20-F", (), "filing"),
        ("6-K", (), "filing"),
        ("S-1", (), "financing"),
        ("424B5", (), "financing"),
        ("SC 13D", (), "m&a"),
        ("SC 13G/A", (), "filing"),
        ("4", (), "filing"),
    ],
)
def test_filings_by_form(pack: RuleSet, form: str, items: tuple[str, ...], category: str) -> None:
    assert category in categories(pack, f"{form} filing", form=form, filing_items=items)


def test_price_pack(pack: RuleSet) -> None:
    def fired(change: float) -> list[str]:
        return [m.rule_id for m in pack.match_price(PriceEvent("KC", NOW, {"change_pct": change}, "1d"))]

    assert fired(6.0) == ["price-move-5"]
    assert fired(-12.5) == ["price-move-10"]
    assert fired(2.0) == []
    assert all(r.cooldown is not None for r in pack.price_rules())
