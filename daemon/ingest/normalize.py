"""RawEntry -> Item: plain text, trusted UTC dates, canonical URL, stable uid. Pure, no I/O.

Feed text is untrusted (DESIGN.md §8): every HTML fragment goes through nh3 with no tags allowed,
so what leaves this module is text that templates escape again, never markup.
"""

from __future__ import annotations

import hashlib
import html
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import nh3

from daemon.models import Item, RawEntry

SUMMARY_MAX = 600
FUTURE_SLACK = timedelta(days=1)

# Query parameters that identify the click, not the document. Keeping them would give one story
# several uids (one per campaign/feed it was seen in).
_TRACKING_EXACT = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "yclid",
        "igshid",
        "mc_cid",
        "mc_eid",
        "_hsenc",
        "_hsmi",
        "mkt_tok",
        "ncid",
        "cmpid",
        "feedtype",  # Reuters: ?feedType=RSS&feedName=businessNews
        "feedname",
        "__twitter_impression",
    }
)
_TRACKING_PREFIXES = ("utm_",)  # utm_source=feedburner&utm_medium=feed&utm_campaign=... (FeedBurner)
_BLOCK_TAG = re.compile(r"<(?=/?(?:br|p|div|li|ul|ol|tr|td|th|h[1-6]|blockquote|table|section|article|pre|hr)\b)", re.I)
_WS = re.compile(r"\s+")


def normalize(entry: RawEntry, *, source_id: str, source_label: str, now: datetime) -> Item | None:
    """None for an entry with neither title nor link: nothing a reader could recognise or open."""
    now = _utc(now)
    title = clean_title(entry.title)
    url = canonical_url(entry.link)
    if not title and not url:
        return None
    summary = truncate(html_to_text(entry.summary_html), SUMMARY_MAX)
    guid = entry.guid.strip()
    return Item(
        uid=stable_uid(url=url, guid=guid, source_id=source_id, title=title, summary=summary),
        source_id=source_id,
        url=url,
        title=title or truncate(summary, 120) or url,
        summary=summary,
        published_at=trusted_date(entry.published, now),
        guid=guid,
        form=entry.form,
        filing_items=entry.filing_items,
        ticker_hints=entry.ticker_hints,
        source_label=source_label,
    )


def html_to_text(fragment: str) -> str:
    """HTML fragment -> one line of plain text (scripts, styles and attributes dropped by nh3)."""
    if not fragment:
        return ""
    spaced = _BLOCK_TAG.sub(" <", fragment)  # "a<br>b" must read "a b", not "ab"
    text = nh3.clean(spaced, tags=set())
    return _WS.sub(" ", html.unescape(text)).strip()


def clean_title(title: str) -> str:
    """One line, no markup, entities decoded, CR/LF gone (titles end up in mail subjects)."""
    if not title:
        return ""
    if "<" in title:
        title = nh3.clean(title, tags=set())
    return _WS.sub(" ", html.unescape(title)).strip()


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
    """Aware UTC; a missing date, or one more than a day ahead (bad clocks, bad zones), is `now`."""
    now = _utc(now)
    if published is None:
        return now
    when = _utc(published)
    return now if when > now + FUTURE_SLACK else when


def canonical_url(link: str) -> str:
    """Comparable form of a link; "" for anything but http(s).

    Lowercases scheme and host, drops the default port, the fragment and tracking parameters.
    Remaining parameters keep their order: reordering would be a guess about the server.
    """
    link = link.strip()
    if not link:
        return ""
    try:
        parts = urlsplit(link)
        port = parts.port
    except ValueError:
        return ""
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return ""
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and not (scheme == "http" and port == 80) and not (scheme == "https" and port == 443):
        host = f"{host}:{port}"
    if parts.username or parts.password:
        userinfo = parts.username or ""
        if parts.password:
            userinfo += ":" + parts.password
        host = f"{userinfo}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        kept = [(k, v) for k, v in pairs if not _tracking(k, v)]
        if len(kept) != len(pairs):
            query = urlencode(kept, doseq=True)
    return urlunsplit((scheme, host, parts.path or "/", query, ""))


def _tracking(key: str, value: str) -> bool:
    k = key.lower()
    if k in _TRACKING_EXACT or k.startswith(_TRACKING_PREFIXES):
        return True
    # Seeking Alpha: ?source=feed_symbol_MSFT marks which feed was clicked, not the article
    return k == "source" and value.startswith("feed_")


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
        if guid and canonical_url(guid) != url and guid != url:
            key += "\x00guid:" + guid
    elif guid:
        key = "guid:" + source_id + "\x00" + guid
    else:
        key = "hash:" + source_id + "\x00" + title + "\x00" + summary
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def _utc(dt: datetime) -> datetime:
    """Naive datetimes are taken as UTC (feedparser's parsed times are UTC)."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
