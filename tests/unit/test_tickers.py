"""TickerLinker evidence kinds, false-positive guards, and watchlist.yaml loading."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.errors import ConfigError
from daemon.ingest.tickers import TickerLinker, load_watchlist
from daemon.models import Item, Ticker, Watchlist

NOW = datetime(2025, 3, 1, tzinfo=UTC)
BENCH = Path(__file__).resolve().parents[2] / "bench"
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


# --- one test per linking rule (docs/tickers.md) -------------------------------------------------

RULES = TickerLinker(
    Watchlist(
        tickers=(
            Ticker("KC", "Kingsoft Cloud Holdings Limited", "NASDAQ", ("Kingsoft Cloud", "3896.HK"), "0001795589"),
            Ticker("AAPL", "Apple Inc.", "NASDAQ", cik="0000320193"),
            Ticker("NOW", "ServiceNow, Inc.", "NYSE"),
            Ticker("ALL", "The Allstate Corporation", "NYSE"),
            Ticker("SE", "Sea Ltd", "NYSE"),
            Ticker("AMZN", "Amazon.com, Inc.", "NASDAQ"),
            Ticker("LLY", "Eli Lilly and Company", "NYSE"),
            Ticker("GPS", "The Gap, Inc.", "NYSE"),
            Ticker("ADDYY", "adidas AG ADR", "OTC"),
        )
    )
)


def linked(title: str, summary: str = "", *, url: str = "", hints: tuple[str, ...] = ()) -> tuple[str, ...]:
    return RULES.link(
        Item(uid="u", source_id="s", url=url, title=title, summary=summary, published_at=NOW, ticker_hints=hints)
    )


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Traders pile into $KC after the print", ("KC",)),
        ("$now and $ALL rally", ("ALL", "NOW")),  # a cashtag is evidence even for a word-like symbol
        ("Cashtag at the end of a sentence: $AAPL.", ("AAPL",)),
    ],
)
def test_cashtag_links(text: str, expected: tuple[str, ...]) -> None:
    assert linked(text) == expected


@pytest.mark.parametrize(
    "text", ["Costs $5 a share", "Raises $5.2bn in bonds", "Beats by $0.12", "HK$3 per share", "US$20 note", "$5B deal"]
)
def test_money_is_not_a_cashtag(text: str) -> None:
    assert linked(text) == ()


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Results announced (NASDAQ: KC)", ("KC",)),
        ("Results announced (NYSE:NOW)", ("NOW",)),
        ("NYSE:ALL shares fall", ("ALL",)),
        ("Nasdaq: KC reports", ("KC",)),
        ("Nasdaq Global Select Market: KC", ("KC",)),
        ("Dual listing (HKEX: 3896)", ("KC",)),
        ("Dual listing (HKEX: 03896)", ("KC",)),  # Hong Kong codes are often zero-padded
        ("Stocks climb. Nasdaq: now at a record", ()),  # the symbol after the prefix must be in capitals
        ("Kansas Co. (TSX: KC) drills", ()),  # another market's KC is another company
    ],
)
def test_exchange_prefix_forms(text: str, expected: tuple[str, ...]) -> None:
    assert linked(text) == expected


def test_feed_tag_links_even_a_word_like_symbol() -> None:
    assert linked("Notable earnings after the close", hints=("NOW", "ALL", "XYZ")) == ("ALL", "NOW")
    assert linked("Market wrap", hints=("3896",)) == ("KC",)


def test_cik_in_an_edgar_address_or_title() -> None:
    filing = "https://www.sec.gov/Archives/edgar/data/1795589/000110465924012345/0001104659-24-012345-index.htm"
    assert linked("6-K - Report of foreign issuer", url=filing) == ("KC",)
    company = "https://www.sec.gov/cgi-bin/browse-edgar?action=getcompany&CIK=0000320193&type=8-K"
    assert linked("8-K - Current report", url=company) == ("AAPL",)
    assert linked("8-K - Kingsoft Cloud Holdings Ltd (0001795589) (Filer)") == ("KC",)
    assert linked("8-K - Current report", url="https://www.sec.gov/Archives/edgar/data/999999/x.htm") == ()
    # a number in some other site's address is not a CIK
    assert linked("Photo gallery", url="https://example.com/edgar/data/1795589/") == ()


def test_names_are_word_bounded_and_case_aware() -> None:
    assert linked("Apple unveils a new phone") == ("AAPL",)
    assert linked("APPLE SUPPLIERS RALLY") == ("AAPL",)
    assert linked("Grandma's apple pie wins the fair") == ()  # a capitalised name needs a capital
    assert linked("Applebee's opens in Ohio") == ()  # word boundary
    assert linked("Pineapple prices soar") == ()
    assert linked("Kingsoft Cloud to hold annual meeting") == ("KC",)
    assert linked("new adidas trainers sell out") == ("ADDYY",)  # a lower-case name matches any case


def test_short_forms_of_legal_names() -> None:
    assert linked("Tribe sues Amazon over patents") == ("AMZN",)  # "Amazon.com, Inc." -> "Amazon"
    assert linked("Eli Lilly drug approved") == ("LLY",)  # "Eli Lilly and Company" -> "Eli Lilly"
    assert linked("Allstate raises premiums") == ("ALL",)  # "The Allstate Corporation" -> "Allstate"


def test_weak_short_form_needs_the_symbol() -> None:
    assert linked("Sea levels rise along the coast") == ()  # "Sea" from "Sea Ltd" is an ordinary word
    assert linked("Gap widens between rich and poor") == ()
    assert linked("Sea (SE) jumps on gaming revenue") == ("SE",)
    assert linked("Sea Ltd posts record quarter") == ("SE",)  # the legal name itself is never weak


def test_common_word_symbol_needs_evidence() -> None:
    # written alone, a symbol that is a word or two letters is not evidence
    assert linked("Markets NOW: stocks open higher") == ()
    assert linked("ALL eyes on the Fed") == ()
    assert linked("Chiefs win in KC again") == ()
    assert linked("SE Asia demand slows") == ()
    # with a cashtag, an exchange prefix, a feed tag or the company's name it counts
    assert linked("$NOW jumps") == ("NOW",)
    assert linked("ServiceNow (NOW) rises") == ("NOW",)
    assert linked("Allstate (ALL) cuts guidance") == ("ALL",)
    assert linked("KC slides", hints=("KC",)) == ("KC",)


def test_seeking_alpha_feed_linked_from_text_alone() -> None:
    """The real feed with its sa:symbol tags hidden: every link right, most named companies found."""
    spec = importlib.util.spec_from_file_location("ticker_quality", BENCH / "ticker_quality.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    feed = bench.PACKAGED_FEED.read_bytes()
    truth, names = bench.tagged(feed)
    linker = TickerLinker(Watchlist(tickers=tuple(Ticker(s, n) for s, n in sorted(names.items()))))
    items = bench.untagged_items(feed)
    found = {i.title: set(linker.link(i)) for i in items}
    pairs = [(found[i.title], set(t)) for i, t in zip(items, truth, strict=True)]
    tp, fp, fn = bench.score([p for p in pairs if len(p[1]) <= bench.ROUNDUP_MIN_TAGS])
    assert fp == 0
    assert tp / (tp + fn) >= 0.6
    assert found["Microsoft and Parexel announce life science tech cloud initiative"] == {"MSFT", "PRXL"}
    assert found["Alibaba, Red Hat announce cloud partnership"] == {"BABA", "RHT"}
    assert found["Native American tribe suing Microsoft, Amazon over patents it holds"] == {"AMZN", "MSFT"}
