"""Near-duplicate headlines across sources."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon.ingest.cluster import Clusterer, same_story, story_key
from daemon.models import Item

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def item(uid: str, title: str, tickers: tuple[str, ...] = (), at: datetime = T0) -> Item:
    return Item(uid=uid, source_id="s", url="", title=title, summary="", published_at=at, tickers=tickers)


@pytest.mark.parametrize(
    "a,b",
    [
        (
            "Kingsoft Cloud Announces Fourth Quarter and Fiscal Year 2024 Results",
            "Kingsoft Cloud announces fourth quarter and fiscal year 2024 results - Reuters",
        ),
        ("Microsoft beats by $0.12, beats on revenue", "Microsoft beats by $0.12, beats on revenue | Nasdaq"),
        ("UPDATE 2-Apple to buy back $90 bln in shares", "Apple to buy back $90 billion in shares - Bloomberg"),
        ("金山云发布2024年第四季度财报", "金山云公布2024年第四季度财报"),
        ("Kingsoft Cloud Q4 2024 results beat estimates", "Kingsoft Cloud fourth-quarter 2024 results beat estimates"),
        (
            "Kingsoft Cloud reports Q4 revenue up 30% as AI demand grows",
            "Kingsoft Cloud Q4 revenue up 30% as AI demand grows",
        ),
    ],
)
def test_same_story(a: str, b: str) -> None:
    assert same_story(a, b) and same_story(b, a)


@pytest.mark.parametrize(
    "a,b",
    [
        ("Apple reports record quarter", "Apple reports weak quarter"),
        ("Kingsoft Cloud announces Q4 results", "Kingsoft Cloud announces CFO departure"),
        ("Microsoft Q1 2018 results", "Microsoft Q2 2018 results"),
    ],
)
def test_different_stories(a: str, b: str) -> None:
    assert not same_story(a, b)


def test_short_titles_need_exact_token_match() -> None:
    assert same_story("Apple buyback", "Apple buyback - Reuters")
    assert not same_story("Apple buyback", "Apple lawsuit")
    assert not same_story("", "")


def test_story_key_ignores_boilerplate_and_order() -> None:
    assert story_key("Microsoft beats on revenue - Reuters") == story_key("BRIEF-Revenue: Microsoft beats")
    assert story_key("The company reports") == ""


def test_clusterer_joins_recent_same_ticker_story() -> None:
    c = Clusterer([("c1", "Kingsoft Cloud announces fourth quarter 2024 results", ("KC",), T0 - timedelta(hours=5))])
    assert c.assign(item("u2", "Kingsoft Cloud Announces Fourth Quarter 2024 Results | Nasdaq", ("KC",))) == "c1"


def test_clusterer_needs_shared_ticker_or_both_untickered() -> None:
    c = Clusterer(
        [
            ("c1", "Company announces fourth quarter 2024 results", ("KC",), T0),
            ("c2", "Oil prices rise on supply worries", (), T0),
        ]
    )
    assert c.assign(item("u2", "Company announces fourth quarter 2024 results", ("MSFT",))) == "u2"
    assert c.assign(item("u3", "Company announces fourth quarter 2024 results", ())) == "u3"
    assert c.assign(item("u4", "Oil prices rise on supply worries - Reuters", ())) == "c2"
    assert c.assign(item("u5", "Company announces fourth quarter 2024 results", ("KC", "MSFT"))) == "c1"


def test_clusterer_window_is_48_hours() -> None:
    c = Clusterer([("old", "Kingsoft Cloud prices convertible notes offering", ("KC",), T0 - timedelta(hours=49))])
    assert c.assign(item("new", "Kingsoft Cloud prices convertible notes offering", ("KC",))) == "new"


def test_clusterer_learns_within_a_run_and_picks_best() -> None:
    c = Clusterer([])
    assert c.assign(item("a", "Microsoft to acquire Activision Blizzard for $68.7 billion", ("MSFT",))) == "a"
    assert c.assign(item("b", "Microsoft to acquire Activision Blizzard for $68.7 bln - Reuters", ("MSFT",))) == "a"
    assert c.assign(item("c", "Microsoft cuts 10,000 jobs", ("MSFT",))) == "c"
    assert c.assign(item("d", "Microsoft cuts 10,000 jobs in restructuring", ("MSFT",))) == "c"


def test_clusterer_scales_with_index() -> None:
    recent = [(f"c{i}", f"Headline number {i} about topic{i} and thing{i}", (), T0) for i in range(20_000)]
    c = Clusterer(recent)
    assert c.assign(item("x", "Headline number 12345 about topic12345 and thing12345 - Reuters")) == "c12345"
