"""TickerLinker evidence kinds, false-positive guards, and watchlist.yaml loading."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.errors import ConfigError
from daemon.ingest.tickers import TickerLinker, load_watchlist
from daemon.models import Item, Ticker, Watchlist

NOW = datetime(2025, 3, 1, tzinfo=UTC)
WATCH = Watchlist(
    tickers=(
        Ticker("KC", "Kingsoft Cloud Holdings Limited", "NASDAQ", ("Kingsoft Cloud", "金山云", "3896.HK")),
        Ticker("MSFT", "Microsoft Corporation", "NASDAQ", ("Microsoft",)),
        Ticker("IBM", "International Business Machines Corporation", "NYSE", ("IBM",)),
        Ticker("NOW", "ServiceNow, Inc.", "NYSE"),
        Ticker("BRK.B", "Berkshire Hathaway Inc.", "NYSE"),
        Ticker("AMC", "AMC Entertainment Holdings, Inc.", "NYSE"),
    )
)
LINKER = TickerLinker(WATCH)


def item(title: str, summary: str = "", hints: tuple[str, ...] = ()) -> Item:
    return Item(uid="u", source_id="s", url="", title=title, summary=summary, published_at=NOW, ticker_hints=hints)


def link(
    title: str, summary: str = "", hints: tuple[str, ...] = (), source_ticker: str | None = None
) -> tuple[str, ...]:
    return LINKER.link(item(title, summary, hints), source_ticker)


def test_feed_hints() -> None:
    assert link("Notable earnings after Thursday's close", hints=("AMZN", "MSFT", "WYNN")) == ("MSFT",)
    assert link("x", hints=("3896",)) == ("KC",)  # code alias "3896.HK" also answers to "3896"


def test_per_ticker_source() -> None:
    assert link("8-K - Current report", source_ticker="KC") == ("KC",)
    assert link("8-K - Current report", source_ticker="ZZZZ") == ()


def test_cashtags() -> None:
    assert link("Watching $KC and $msft into the close") == ("KC", "MSFT")
    assert link("Raised $20B in new funding, $KCX unrelated") == ()


@pytest.mark.parametrize(
    "text",
    [
        "Results announced (NASDAQ: KC)",
        "Results announced (Nasdaq: KC)",
        "Results announced (NASDAQ:KC; HKEX: 3896)",
        "Results announced (HKEX: 3896)",
        "Big Blue (NYSE: IBM) prices notes",
    ],
)
def test_exchange_tags(text: str) -> None:
    assert link(text) in (("KC",), ("IBM",))


def test_exchange_tag_on_another_market_is_another_company() -> None:
    assert link("Kansas Co. (TSX: KC) drills") == ()
    assert link("NYSE American: AMC") == ("AMC",)


def test_names_and_aliases() -> None:
    assert link("Kingsoft Cloud to hold annual meeting") == ("KC",)
    assert link("KINGSOFT CLOUD HOLDINGS LIMITED files annual report") == ("KC",)
    assert link("Kingsoft   CLOUD posts revenue") == ("KC",)  # case- and whitespace-insensitive
    assert link("Microsoft's cloud grows") == ("MSFT",)
    assert link("Deal with Berkshire Hathaway closes") == ("BRK.B",)  # short form of "... Inc."
    assert link("ServiceNow beats") == ("NOW",)


def test_name_inside_a_longer_watched_name_is_not_linked() -> None:
    linker = TickerLinker(
        Watchlist(tickers=(Ticker("AAPL", "Apple Inc.", aliases=("Apple",)), Ticker("APLE", "Apple Hospitality REIT")))
    )
    assert linker.link(item("Apple Hospitality REIT raises dividend")) == ("APLE",)
    assert linker.link(item("Apple Hospitality REIT and Apple both up")) == ("AAPL", "APLE")


def test_names_are_word_bounded() -> None:
    assert link("Microsofty startup clones Windows") == ()
    assert link("MyKingsoft Cloudy day") == ()


def test_cjk_alias_by_substring() -> None:
    assert link("金山云发布2024年第四季度业绩") == ("KC",)
    assert link("金山软件发布业绩") == ()


def test_bare_symbol_guards() -> None:
    assert link("MSFT slides after guidance") == ("MSFT",)
    assert link("IBM and AMC rally") == ("AMC", "IBM")
    # two-letter symbols never match bare
    assert link("Chiefs win in KC again") == ()
    assert link("KC-135 tanker contract awarded") == ()
    # common words are not tickers even when watched
    assert link("Markets NOW: stocks open higher") == ()
    assert link("Shares of ServiceNow (NOW) rise") == ("NOW",)  # parenthesized: a ticker tag
    # lower-case or embedded forms are words, not symbols
    assert link("msft is fine; xMSFTx too") == ()
    # in an ALL-CAPS headline every word looks like a ticker
    assert link("MARKETS SLIDE AS AMC THEATRES CLOSE FOR WINTER") == ()


def test_summary_counts_and_result_sorted_unique() -> None:
    got = link("Tech roundup", "Microsoft and Kingsoft Cloud ... $MSFT (NASDAQ: KC) MSFT", hints=("MSFT", "KC"))
    assert got == ("KC", "MSFT")


def test_empty_watchlist_links_nothing() -> None:
    assert TickerLinker(Watchlist()).link(item("Microsoft $MSFT (NASDAQ: MSFT)", hints=("MSFT",))) == ()


def test_many_names_one_pattern_is_fast_enough() -> None:
    big = Watchlist(
        tickers=tuple(
            Ticker(f"T{i:04d}", f"Company Number{i} Holdings Inc.", "NYSE", (f"Brand{i}",)) for i in range(3000)
        )
        + WATCH.tickers
    )
    linker = TickerLinker(big)
    assert linker.link(item("Brand1234 and Company Number77 Holdings merge; Kingsoft Cloud comments")) == (
        "KC",
        "T0077",
        "T1234",
    )


# --- watchlist.yaml ------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "watchlist.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_load_repo_watchlist_format(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        """tickers:
  - symbol: KC
    exchange: NASDAQ
    name: Kingsoft Cloud Holdings Limited
    aliases: ["Kingsoft Cloud", "金山云"]
    cik: "0001795589"
  - symbol: msft
    name: Microsoft Corporation
    cik: 789019
""",
    )
    wl = load_watchlist(p)
    assert wl.symbols() == ("KC", "MSFT")
    kc = wl.get("KC")
    assert kc is not None and kc.aliases == ("Kingsoft Cloud", "金山云") and kc.cik == "0001795589"
    ms = wl.get("MSFT")
    assert ms is not None and ms.cik == "0000789019" and ms.exchange == ""


def test_load_empty_watchlist(tmp_path: Path) -> None:
    assert load_watchlist(write(tmp_path, "")) == Watchlist()
    assert load_watchlist(write(tmp_path, "tickers: []\n")) == Watchlist()


@pytest.mark.parametrize(
    "text,where,message",
    [
        ("tickers:\n  - symbol: KC\n    nmae: x\n", ":3:5:", "unknown ticker field 'nmae'"),
        ("tickers:\n  - exchange: NYSE\n", ":2:5:", "without 'symbol'"),
        ("tickers:\n  - symbol: KC\n  - symbol: kc\n", ":3:5:", "listed twice"),
        ("tickers:\n  - symbol: 'K C'\n", ":2:13:", "is not a ticker"),
        ("tickers:\n  - symbol: KC\n    cik: 12ab\n", ":3:10:", "must be up to 10 digits"),
        ("tickers:\n  - symbol: KC\n    aliases: {a: 1}\n", ":3:14:", "must be a list"),
        ("tickers:\n  - symbol: [KC\n", ":3:1:", ""),
        ("tickerz: []\n", ":1:1:", "unknown key 'tickerz'"),
        ("tickers: KC\n", ":1:10:", "must be a list"),
        ("- KC\n", ":1:1:", "expected a mapping"),
    ],
)
def test_bad_watchlist_reports_path_line_col(tmp_path: Path, text: str, where: str, message: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_watchlist(p)
    assert str(exc.value).startswith(f"{p}{where}")
    assert message in str(exc.value)


def test_missing_watchlist_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_watchlist(tmp_path / "nope.yaml")
