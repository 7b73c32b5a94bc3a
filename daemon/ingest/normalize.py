"""RawEntry -> Item: plain visible text, trusted UTC dates, canonical URL, stable uid. Pure, no I/O.

Feed text is untrusted (DESIGN.md §8): every HTML fragment goes through nh3 with no tags allowed,
then `clean_text` removes controls, bidi overrides and invisible characters, so what leaves this
module is one line of visible text that templates escape again, never markup.

Dates (issue 9, freshness): every date is aware UTC. An undated item, one dated before feeds
existed (epoch-zero bugs), or one dated more than FUTURE_SLACK ahead of the clock takes the time it
was first seen (`now`): a wrong date must neither bury a new story as backlog nor pin an old one
to the top of every digest. Clock skew within FUTURE_SLACK is kept as the feed gave it.
"""

from __future__ import annotations

import hashlib
import html
import re
from datetime import UTC, datetime, timedelta

import nh3

from daemon.ingest.publisher import split_publisher, summary_without_headline
from daemon.ingest.symbols import feed_ticker_hints
from daemon.ingest.text import clean_text, drop_hidden
from daemon.ingest.urls import canonical_url
from daemon.models import Item, RawEntry

__all__ = ["canonical_url", "clean_text", "clean_title", "html_to_text", "normalize", "stable_uid", "trusted_date"]

SUMMARY_MAX = 600
TITLE_MAX = 300  # a title is a mail subject and a line in a list, not an article
FUTURE_SLACK = timedelta(minutes=15)
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)  # before any feed; such dates are parse errors
_BLOCK_TAG = re.compile(r"<(?=/?(?:br|p|div|li|ul|ol|tr|td|th|h[1-6]|blockquote|table|section|article|pre|hr)\b)", re.I)


def normalize(entry: RawEntry, *, source_id: str, source_label: str, now: datetime) -> Item | None:
    """None for an entry with neither title nor link: nothing a reader could recognise or open."""
    now = _utc(now)
    title = clean_title(entry.title)
    url = canonical_url(entry.link)
    if not title and not url:
        return None
    summary = truncate(html_to_text(entry.summary_html), SUMMARY_MAX)
    headline = split_publisher(title, url=url, summary=summary)
    if headline.publisher:
        title = headline.title
        summary = summary_without_headline(summary, headline)
        if headline.via_aggregator:
            source_label = headline.publisher
    guid = clean_text(entry.guid)
    return Item(
        uid=stable_uid(url=url, guid=guid, source_id=source_id, title=title, summary=summary),
        source_id=source_id,
        url=url,
        title=truncate(title, TITLE_MAX) or truncate(summary, 120) or url,
        summary=summary,
        published_at=trusted_date(entry.published, now),
        guid=guid,
        form=entry.form,
        filing_items=entry.filing_items,
        ticker_hints=feed_ticker_hints(entry.ticker_hints, entry.tags),
        source_label=source_label,
        accession=entry.accession,
    )


def html_to_text(fragment: str) -> str:
    """HTML fragment -> one line of plain text (scripts, styles and attributes dropped by nh3)."""
    if not fragment:
        return ""
    if "<" in fragment:
        spaced = _BLOCK_TAG.sub(" <", drop_hidden(fragment))  # "a<br>b" must read "a b", not "ab"
        fragment = nh3.clean(spaced, tags=set())
    return clean_text(html.unescape(fragment) if "&" in fragment else fragment)


def clean_title(title: str) -> str:
    """One line, no markup, entities decoded, CR/LF and hidden characters gone (titles end up in
    mail subjects, where a line break would start a header)."""
    if not title:
        return ""
    if "<" in title:
        title = nh3.clean(drop_hidden(title), tags=set())
    return clean_text(html.unescape(title))


def truncate(text: str, limit: int) -> str:
    """Cut on a word boundary and mark the cut with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-–—") + "…"


def trusted_date(published: datetime | None, now: datetime) -> datetime:
    """Aware UTC; a missing date, one before 1990, or one ahead of `now` by more than FUTURE_SLACK
    (bad clocks, wrong zones, scheduled posts) is `now`, the time first seen."""
    now = _utc(now)
    if published is None:
        return now
    try:
        when = _utc(published)
    except (OverflowError, ValueError):  # year 1 or 9999 shifted out of range by its offset
        return now
    return now if when > now + FUTURE_SLACK or when < EARLIEST else when


def stable_uid(*, url: str, guid: str, source_id: str, title: str, summary: str) -> str:
    """sha256 (first 32 hex chars) of the most stable identity the entry offers.

    Order and why:
    1. "link:" + canonical URL — the same article reached from two feeds or two sources gets
       one uid, so the store keeps it once. When the entry also has a guid that is *not* that
       URL, the guid is appended: Seeking Alpha gives many distinct news items the same link
       (".../symbol/MSFT/news") and different guids; link alone would silently drop all but one.
       A guid is the same in every feed of a publisher, so cross-feed dedupe still works.
    2. "guid:" + source_id + guid — no usable link; a guid is only unique within its publisher,
       so it is scoped to the source.
    3. "hash:" + source_id + title + summary — neither: the content is all there is.
    """
    if url:
        key = "link:" + url
        if guid and guid != url and (guid[:4].lower() != "http" or canonical_url(guid) != url):
            key += "\x00guid:" + guid
    elif guid:
        key = "guid:" + source_id + "\x00" + guid
    else:
        key = "hash:" + source_id + "\x00" + title + "\x00" + summary
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def _utc(dt: datetime) -> datetime:
    """Naive datetimes are taken as UTC (feedparser's parsed times are UTC)."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
