"""parse_feed on real captures and on feedparser's own odd/malformed test documents."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

import daemon
from daemon.ingest.parse import parse_feed

FP = Path(__file__).resolve().parents[1] / "fixtures" / "feedparser"
SAMPLES = Path(daemon.__file__).resolve().parent / "samples" / "feeds"


def fp(name: str) -> bytes:
    return (FP / name).read_bytes()


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


@pytest.mark.parametrize("path", sorted(FP.glob("*.xml")), ids=lambda p: p.name)
def test_every_feedparser_document_gives_a_result_never_an_exception(path: Path) -> None:
    result = parse_feed(path.read_bytes(), content_type="application/xml")
    assert result.error is None or result.entries == ()


@pytest.mark.parametrize(
    "name",
    [
        "illformed__rss_empty_document.xml",
        "illformed__aaa_illformed.xml",
        "illformed__undeclared_namespace.xml",
        "encoding__bozo_invalid-bytes-with-bom.xml",
    ],
)
def test_unreadable_documents_are_errors(name: str) -> None:
    result = parse_feed(fp(name))
    assert result.entries == ()
    assert result.error is not None and result.error.startswith("not a readable feed")


@pytest.mark.parametrize(
    "name",
    [
        "encoding__bozo_double-encoded-html.xml",
        "encoding__bozo_linenoise.xml",
        "encoding__bozo_encoding_mismatch_crash.xml",
        "illformed__rdf_channel_empty_textinput.xml",
        "illformed__rss_incomplete_cdata.xml",
        "illformed__rss_item_link_corrupted_ampersands.xml",
        "illformed__chardet__koi8r.xml",
        "illformed__chardet__windows1255.xml",
    ],
)
def test_ill_formed_with_entries_is_a_warning_not_an_error(name: str) -> None:
    result = parse_feed(fp(name))
    assert result.error is None
    assert len(result.entries) == 1
    assert result.warning  # feedparser's bozo, recorded


def test_valid_empty_feeds_are_not_errors() -> None:
    for name in (
        "wellformed__feedburner__feedburner_browserfriendly.xml",
        "wellformed__rdf__rss_version_10_not_default_ns.xml",
        "illformed__http_high_bit_date.xml",  # iso-8859-7 date text must not crash
    ):
        result = parse_feed(fp(name))
        assert result.error is None and result.warning is None, name
        assert result.entries == ()
    # declared "bogus" encoding on an empty <rss>: readable, but the override is recorded
    bogus = parse_feed(fp("encoding__bozo_bogus_encoding.xml"))
    assert bogus.error is None and bogus.warning and "CharacterEncodingOverride" in bogus.warning


def test_doctype_is_stripped_and_title_read() -> None:
    result = parse_feed(fp("illformed__always_strip_doctype.xml"))
    assert result.error is None and result.feed_title == "found"


def test_cp1252_smart_quote_read_as_unicode() -> None:
    result = parse_feed(fp("encoding__demoronize-1.xml"))
    assert result.warning is None
    assert result.entries[0].summary_html == "don\u2019t"


def test_double_encoded_html_expectation() -> None:
    (entry,) = parse_feed(fp("encoding__bozo_double-encoded-html.xml")).entries
    assert entry.summary_html == "\u2026"


def test_linenoise_kept_as_decoded_text() -> None:
    (entry,) = parse_feed(fp("encoding__bozo_linenoise.xml")).entries
    assert entry.summary_html == "\xe2\u20ac\u2122\xe2\u20ac\x9d\u0160"


def test_corrupted_ampersands_in_link() -> None:
    (entry,) = parse_feed(fp("illformed__rss_item_link_corrupted_ampersands.xml")).entries
    assert entry.link == "http://link/get?a=1&b=2"


def test_entity_in_doctype_and_non_url_guid() -> None:
    (a,) = parse_feed(fp("wellformed__rss__entity_in_doctype.xml")).entries
    assert a.guid == "tag:example.com,2006-05-04:/blog/"
    (b,) = parse_feed(fp("wellformed__rss__item_guid_not_permalink_not_url.xml")).entries
    assert b.guid == "abc"
    assert b.link == ""  # a non-permalink guid must not become the link


def test_rdf_item_read_despite_broken_textinput() -> None:
    (entry,) = parse_feed(fp("illformed__rdf_channel_empty_textinput.xml")).entries
    assert entry.title == "crashes here"
    assert entry.guid == "http://example.com/1"  # rdf:about


@pytest.mark.parametrize("body", [b"", b"   \n\t", b"\xef\xbb\xbf\n"])
def test_empty_body_is_an_error(body: bytes) -> None:
    result = parse_feed(body)
    assert result.error == "empty document" and result.entries == ()


def test_html_page_is_an_error() -> None:
    page = b"<!DOCTYPE html>\n<html><head><title>Login</title></head><body><p>Sign in</p></body></html>"
    result = parse_feed(page, content_type="text/html; charset=utf-8")
    assert result.error is not None and "HTML" in result.error
    assert parse_feed(b"<html><body>gone</body></html>").error is not None


def test_plain_text_is_not_a_feed() -> None:
    result = parse_feed(b"Service temporarily unavailable, try later.", content_type="text/plain")
    assert result.error is not None and result.entries == ()


# --- real captures ----------------------------------------------------------------------


def test_edgar_company_feed_forms_and_items() -> None:
    result = parse_feed(sample("edgarkit_company_atom_keenvision_cik1889983.xml"))
    assert result.error is None and result.warning is None
    assert len(result.entries) == 55
    forms = Counter(e.form for e in result.entries)
    assert forms["8-K"] == 11 and forms["425"] == 7 and forms["SC 13G"] == 6 and forms["S-1/A"] == 4
    first = result.entries[0]
    assert first.form == "8-K"
    # <items-desc>items 1.01, 2.03, 8.01and9.01</items-desc> (sic, no spaces around "and")
    assert first.filing_items == ("1.01", "2.03", "8.01", "9.01")
    assert first.guid == "urn:tag:sec.gov,2008:accession-number=0001213900-25-006497"
    assert first.link.endswith("0001213900-25-006497-index.htm")
    assert first.published == datetime(2025, 1, 24, 21, 0, 43, tzinfo=UTC)  # -05:00 in the feed
    assert all(e.filing_items == () for e in result.entries if e.form != "8-K")
    # EDGAR categories are form types, never ticker hints ("UPLOAD", "CORRESP" look like symbols)
    assert all(e.ticker_hints == () for e in result.entries)


def test_edgar_8k_items_fall_back_to_summary_lines() -> None:
    body = b"""<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>x</title>
    <entry><category label="form type" scheme="https://www.sec.gov/" term="8-K"/>
    <id>urn:a</id><title>8-K - Current report</title><updated>2025-02-01T10:00:00-05:00</updated>
    <summary type="html">&lt;b&gt;Filed:&lt;/b&gt; 2025-02-01&lt;br&gt;Item 2.02: Results of Operations
    &lt;br&gt;Item 9.01: Financial Statements and Exhibits</summary></entry></feed>"""
    (entry,) = parse_feed(body).entries
    assert entry.form == "8-K"
    assert entry.filing_items == ("2.02", "9.01")


def test_seeking_alpha_symbols_all_kept() -> None:
    result = parse_feed(sample("seekingalpha_msft_2017-10.xml"))
    assert len(result.entries) == 30
    assert result.entries[0].ticker_hints == ("MSFT",)
    assert result.entries[0].title == "Microsoft (MSFT) Q1 2018 Results - Earnings Call Transcript"
    # feedparser keeps only the last <sa:symbol>; our scan keeps every one
    notable = result.entries[4]
    assert notable.title == "Notable earnings after Thursday\u2019s close"
    assert len(notable.ticker_hints) == 113
    assert {"AMZN", "ALGN", "AJG"} <= set(notable.ticker_hints)
    assert sum(len(e.ticker_hints) for e in result.entries) == 291  # every <sa:symbol> in the file
    assert result.entries[0].published == datetime(2017, 10, 27, 1, 54, 10, tzinfo=UTC)


def test_feedburner_origlink_replaces_redirect_link() -> None:
    result = parse_feed(sample("reuters_businessnews_feedburner_2019-01.xml"))
    assert len(result.entries) == 20 and result.feed_title == "Reuters: Business News"
    first = result.entries[0]
    assert first.link.startswith("https://www.reuters.com/article/us-casino-m-a-leclerc/")
    assert "feedburner" not in first.link
    assert first.tags == ("businessNews",) and first.ticker_hints == ()


def test_sec_press_releases() -> None:
    result = parse_feed(sample("edgarkit_sec_pressreleases.rss"))
    assert len(result.entries) == 25 and result.error is None
    assert all(e.form is None for e in result.entries)
    assert all(e.published is not None for e in result.entries)


def test_category_tickers_become_hints() -> None:
    body = b"""<rss version="2.0"><channel><title>GNW</title><item><title>Kingsoft Cloud results</title>
    <link>https://example.com/a</link><category>NASDAQ:KC</category><category>HKEX:3896</category>
    <category>Earnings Releases</category><category>2024</category><category>MSFT</category>
    <category>Madeup: XYZ</category></item></channel></rss>"""
    (entry,) = parse_feed(body).entries
    assert entry.ticker_hints == ("KC", "3896", "MSFT")


def test_missing_date_is_none() -> None:
    body = b"<rss version='2.0'><channel><title>t</title><item><title>x</title></item></channel></rss>"
    (entry,) = parse_feed(body).entries
    assert entry.published is None and entry.link == ""


def test_relative_links_resolved_against_url() -> None:
    body = (
        b"<rss version='2.0'><channel><title>t</title><item><title>x</title><link>/news/1</link></item></channel></rss>"
    )
    (entry,) = parse_feed(body, url="https://example.com/feed.xml").entries
    assert entry.link == "https://example.com/news/1"


def test_json_feed() -> None:
    doc = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "JF",
        "items": [
            {
                "id": "1",
                "url": "https://example.com/1",
                "title": "Hello",
                "content_html": "<p>Hi <b>there</b></p>",
                "date_published": "2024-05-01T12:00:00+02:00",
                "authors": [{"name": "Ann"}],
                "tags": ["NYSE:IBM", "tech"],
            },
            {"id": "2", "content_text": "a < b", "date_modified": "2024-05-02T00:00:00Z"},
            "junk",
        ],
    }
    result = parse_feed(json.dumps(doc).encode(), content_type="application/feed+json")
    assert result.error is None and result.feed_title == "JF"
    a, b = result.entries
    assert a.title == "Hello" and a.link == "https://example.com/1" and a.guid == "1"
    assert a.published == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert a.author == "Ann" and a.ticker_hints == ("IBM",)
    assert b.summary_html == "a &lt; b"
    assert b.published == datetime(2024, 5, 2, tzinfo=UTC)


def test_json_that_is_not_a_json_feed() -> None:
    assert parse_feed(b'{"hello": 1}').error == "JSON document is not a JSON Feed"
    bad = parse_feed(b"{nope", content_type="application/json")
    assert bad.error is not None and bad.error.startswith("invalid JSON")


def test_feeds_without_a_charset_are_read_in_their_own_script() -> None:
    """Undeclared legacy charsets are guessed (chardet), not read as UTF-8 mojibake."""
    koi8 = parse_feed(fp("illformed__chardet__koi8r.xml"))
    assert koi8.entries[0].title == "Как пережить новогоднюю ночь"
    assert koi8.warning and "KOI8-R" in koi8.warning  # the override is still recorded
    big5 = parse_feed(fp("illformed__chardet__big5.xml"))
    assert big5.error is None and big5.feed_title and big5.feed_title.startswith("我希望")
    hebrew = parse_feed(fp("illformed__chardet__windows1255.xml"))
    assert "\u05d0" <= hebrew.entries[0].summary_html.strip()[0] <= "\u05ea"  # a Hebrew letter
