"""normalize(): untrusted feed entries become clean, dated, identified Items."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

import daemon
from daemon.ingest.normalize import canonical_url, html_to_text, normalize, stable_uid, truncate
from daemon.ingest.parse import parse_feed
from daemon.models import RawEntry

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SAMPLES = Path(daemon.__file__).resolve().parent / "samples" / "feeds"


def norm(**kw: object) -> daemon.models.Item:
    item = normalize(RawEntry(**kw), source_id="src", source_label="Src", now=NOW)  # type: ignore[arg-type]
    assert item is not None
    return item


def test_script_and_event_handlers_removed() -> None:
    item = norm(
        title="T",
        summary_html='<p>Results <script>alert("x")</script>beat<img src=x onerror="alert(1)"></p>'
        "<style>p{color:red}</style><a href='javascript:evil()'>link</a>",
    )
    assert item.summary == "Results beat link"
    assert "<" not in item.summary and "alert" not in item.summary and "onerror" not in item.summary


def test_block_tags_separate_words_and_entities_decoded() -> None:
    assert html_to_text("Agreement<br/>Item 2.03<p>Next</p><li>one</li><li>two</li>") == (
        "Agreement Item 2.03 Next one two"
    )
    assert html_to_text("AT&amp;T &lt;b&gt; caf&eacute; &#8220;q&#8221;") == "AT&T <b> café \u201cq\u201d"


def test_title_cleaned() -> None:
    item = norm(title="  Kingsoft&nbsp;Cloud\r\nBcc: evil@example.com <b>Q4</b> &amp; more \t", link="https://x.com/")
    assert item.title == "Kingsoft Cloud Bcc: evil@example.com Q4 & more"
    assert "\r" not in item.title and "\n" not in item.title


def test_summary_capped_on_word_boundary() -> None:
    text = " ".join(["word"] * 400)
    item = norm(title="t", summary_html=text)
    assert len(item.summary) <= 600
    assert item.summary.endswith("word…")
    assert truncate("short", 600) == "short"
    assert truncate("abcdefghij klmnop", 12) == "abcdefghij…"


def test_dates_become_aware_utc() -> None:
    est = timezone(timedelta(hours=-5))
    assert norm(title="t", published=datetime(2025, 2, 1, 10, 0, tzinfo=est)).published_at == datetime(
        2025, 2, 1, 15, 0, tzinfo=UTC
    )
    naive = norm(title="t", published=datetime(2025, 2, 1, 10, 0)).published_at
    assert naive == datetime(2025, 2, 1, 10, 0, tzinfo=UTC) and naive.tzinfo is UTC


def test_missing_future_and_impossible_dates_are_the_time_first_seen() -> None:
    assert norm(title="t").published_at == NOW
    assert norm(title="t", published=NOW + timedelta(days=3)).published_at == NOW
    assert norm(title="t", published=NOW + timedelta(hours=5)).published_at == NOW  # a wrong zone, not news
    skew = NOW + timedelta(minutes=10)  # a publisher's clock a few minutes fast is kept
    assert norm(title="t", published=skew).published_at == skew
    assert norm(title="t", published=NOW + timedelta(minutes=16)).published_at == NOW
    assert norm(title="t", published=datetime(1970, 1, 1, tzinfo=UTC)).published_at == NOW  # epoch zero
    old = datetime(2018, 6, 4, 13, 0, tzinfo=UTC)  # old news stays old: freshness decides, not normalize
    assert norm(title="t", published=old).published_at == old


def test_entry_without_title_or_link_is_dropped() -> None:
    assert normalize(RawEntry(summary_html="x", guid="g"), source_id="s", source_label="S", now=NOW) is None
    assert normalize(RawEntry(title="  ", link="mailto:a@b"), source_id="s", source_label="S", now=NOW) is None


def test_link_only_entry_gets_a_title() -> None:
    item = norm(link="https://example.com/a")
    assert item.title == "https://example.com/a"


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("HTTPS://Example.COM/a/b?x=1#frag", "https://example.com/a/b?x=1"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("https://example.com", "https://example.com/"),
        (
            "https://ex.com/p?utm_source=feedburner&utm_medium=feed&id=7&utm_campaign=Feed%3A+x&fbclid=abc",
            "https://ex.com/p?id=7",
        ),
        ("https://ex.com/p?b=2&a=1&gclid=z&mc_cid=1&mc_eid=2", "https://ex.com/p?b=2&a=1"),
        (
            "https://www.reuters.com/article/x-idUS1?feedType=RSS&feedName=businessNews",
            "https://www.reuters.com/article/x-idUS1",
        ),
        ("https://seekingalpha.com/article/1-x?source=feed_symbol_MSFT", "https://seekingalpha.com/article/1-x"),
        ("https://ex.com/p?source=press", "https://ex.com/p?source=press"),
        ("javascript:alert(1)", ""),
        ("ftp://ex.com/file", ""),
        ("mailto:a@example.com", ""),
        ("", ""),
        ("not a url", ""),
    ],
)
def test_canonical_url(raw: str, expected: str) -> None:
    assert canonical_url(raw) == expected


def test_uid_stable_and_tracking_insensitive() -> None:
    a = norm(title="A", link="https://ex.com/story?utm_source=x", guid="https://ex.com/story")
    b = norm(title="A changed", link="https://EX.com/story#top", summary_html="new text")
    assert a.uid == b.uid and len(a.uid) == 32
    other_source = normalize(RawEntry(title="A", link="https://ex.com/story"), source_id="o", source_label="O", now=NOW)
    assert other_source is not None and other_source.uid == a.uid  # one article, one uid across sources


def test_uid_keeps_items_that_share_a_listing_link_apart() -> None:
    """Seeking Alpha points many news items at .../symbol/MSFT/news; their guids differ."""
    items = parse_feed((SAMPLES / "seekingalpha_msft_2017-10.xml").read_bytes()).entries
    uids = {normalize(e, source_id="sa", source_label="SA", now=NOW).uid for e in items}  # type: ignore[union-attr]
    assert len(uids) == len(items) == 30


def test_uid_fallbacks() -> None:
    by_guid = stable_uid(url="", guid="abc", source_id="s1", title="t", summary="")
    assert by_guid == stable_uid(url="", guid="abc", source_id="s1", title="other", summary="x")
    assert by_guid != stable_uid(url="", guid="abc", source_id="s2", title="t", summary="")
    by_hash = stable_uid(url="", guid="", source_id="s1", title="t", summary="x")
    assert by_hash != stable_uid(url="", guid="", source_id="s1", title="t", summary="y")
    assert by_hash == stable_uid(url="", guid="", source_id="s1", title="t", summary="x")


def test_carries_filing_and_hints() -> None:
    item = norm(title="8-K", link="https://www.sec.gov/x", form="8-K", filing_items=("2.02",), ticker_hints=("KC",))
    assert item.form == "8-K" and item.filing_items == ("2.02",) and item.ticker_hints == ("KC",)
    assert item.source_id == "src" and item.source_label == "Src" and item.tickers == ()


def test_real_feeds_normalize_cleanly() -> None:
    for path in sorted(SAMPLES.glob("*")):
        result = parse_feed(path.read_bytes())
        items = [normalize(e, source_id=path.stem, source_label="x", now=NOW) for e in result.entries]
        assert items and all(i is not None for i in items), path.name
        for i in items:
            assert i is not None
            assert not any(t in i.summary for t in ("<br", "<img", "<a ", "<div", "<b>"))  # no markup survives
            assert "feedflare" not in i.summary
            assert i.published_at.tzinfo is UTC and i.published_at <= NOW
            assert i.url.startswith("https://") or i.url.startswith("http://")
        assert len({i.uid for i in items if i}) == len(items), path.name


# --- canonical URLs (issue 10) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("https://ex.com/a?ref_src=twsrc%5Etfw&id=3", "https://ex.com/a?id=3"),
        ("https://ex.com/a?ref=rss", "https://ex.com/a"),
        ("https://github.com/o/r/blob/x?ref=main", "https://github.com/o/r/blob/x?ref=main"),  # content, not tracking
        ("https://ex.com/a?_hsenc=p2&_hsmi=9&yclid=1&igshid=2&ncid=3&CMPID=4&pk_campaign=5", "https://ex.com/a"),
        ("https://ex.com/a?q=a+b&utm_source=x&page=%2F2", "https://ex.com/a?q=a+b&page=%2F2"),  # bytes kept
        ("https://user:pw@Ex.com./a", "https://ex.com/a"),  # credentials and the root dot dropped
        ("https://bank.example@evil.example/login", "https://evil.example/login"),
        ("http://[2001:DB8::1]:8080/a", "http://[2001:db8::1]:8080/a"),
        ("https://bücher.example/ä ö", "https://xn--bcher-kva.example/%C3%A4%20%C3%B6"),
        ("https://ex.com/app#!/story/7", "https://ex.com/app#!/story/7"),  # a route, not a place on the page
        ("https://ex.com/a\u202egpj.exe", "https://ex.com/a%E2%80%AEgpj.exe"),  # bidi override made visible
        ("https://ex ample.com/", ""),
        ("https://ex.com:99999/", ""),
        ("http://[::1/", ""),
    ],
)
def test_canonical_url_more(raw: str, expected: str) -> None:
    assert canonical_url(raw) == expected


# --- aggregator titles -----------------------------------------------------------------------------

GOOGLE_LINK = "https://news.google.com/rss/articles/CBMiK2h0dHBzOi8vd3d3LnJldXRlcnMuY29t?oc=5"


def test_google_news_title_loses_its_publisher_which_becomes_the_source() -> None:
    item = norm(
        title="Kingsoft Cloud posts third-quarter revenue rise - Reuters",
        link=GOOGLE_LINK,
        summary_html='<a href="https://x">Kingsoft Cloud posts third-quarter revenue rise</a>&nbsp;&nbsp;'
        '<font color="#6f6f6f">Reuters</font>',
    )
    assert item.title == "Kingsoft Cloud posts third-quarter revenue rise"
    assert item.source_label == "Reuters"
    assert item.summary == ""  # it only repeated the headline and the publisher


def test_publisher_named_in_the_summary_marks_an_aggregated_item() -> None:
    item = norm(
        title="Apple to buy back $90 billion in stock | The Wall Street Journal",
        link="https://aggregator.example/item/1",
        summary_html="Apple to buy back $90 billion in stock <b>The Wall Street Journal</b>",
    )
    assert item.title == "Apple to buy back $90 billion in stock"
    assert item.source_label == "The Wall Street Journal"


def test_suffix_naming_the_sites_own_publisher_is_dropped_but_the_label_stays() -> None:
    item = norm(title="Stocks close higher on rate hopes - MarketWatch", link="https://www.marketwatch.com/story/x")
    assert item.title == "Stocks close higher on rate hopes" and item.source_label == "Src"
    fool = norm(title="3 Dividend Stocks to Buy Now - The Motley Fool", link="https://www.fool.com/investing/x/")
    assert fool.title == "3 Dividend Stocks to Buy Now"


@pytest.mark.parametrize(
    "title,link",
    [
        (
            "Microsoft (MSFT) Q1 2018 Results - Earnings Call Transcript",
            "https://seekingalpha.com/article/4117127-microsoft",
        ),
        ("Kingsoft Cloud - a turnaround story?", "https://blog.example/post"),
        ("Q3 results - Kingsoft Cloud", "https://blog.example/post"),  # headline too short to be one
    ],
)
def test_a_dash_without_evidence_of_a_publisher_stays(title: str, link: str) -> None:
    item = norm(title=title, link=link)
    assert item.title == title and item.source_label == "Src"


# --- text hygiene (issue 13) -----------------------------------------------------------------------


def test_bidi_and_invisible_characters_are_removed_from_titles_and_summaries() -> None:
    item = norm(
        title="Pay\u202eKC\u202c now\u200b \u2066isolated\u2069 \u200emark\u200f \u061c&#x202E;x\U000e0041",
        summary_html="<p>Res\u00adults\ufeff beat\u2028next\u2029line\x85end\x07</p>",
    )
    assert item.title == "PayKC now isolated mark x"
    assert item.summary == "Results beat next line end"


def test_control_characters_and_line_breaks_never_survive_into_a_title() -> None:
    item = norm(title="Breaking\r\nBcc: x@example.com\x00\x1b[31m\tred &#13;&#10;tail", link="https://x.com/")
    assert item.title == "Breaking Bcc: x@example.com[31m red tail"
    assert not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in item.title)


def test_long_titles_are_cut() -> None:
    assert len(norm(title="word " * 200).title) <= 300


# --- feed tags -------------------------------------------------------------------------------------


def test_bare_categories_that_are_ordinary_words_are_not_ticker_tags() -> None:
    item = norm(title="t", ticker_hints=("AI", "KC", "MSFT", "NOW"), tags=("AI", "NASDAQ:KC", "MSFT", "Technology"))
    assert item.ticker_hints == ("KC", "MSFT", "NOW")  # NOW came from sa:symbol, not a category


def test_accession_is_carried() -> None:
    assert norm(title="8-K", accession="0001104659-24-012345").accession == "0001104659-24-012345"
