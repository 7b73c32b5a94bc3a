"""Feed bytes -> RawEntry values; the only module that uses feedparser.

feedparser always gets bytes, never a URL or str: it must not fetch anything (fetch.py owns the
network and its guards), and bytes let it sniff the encoding from the BOM, the XML declaration
and the HTTP Content-Type together. JSON Feed is read here with `json` because feedparser does
not know it.

What feedparser flattens we recover from the bytes: Seeking Alpha lists several
`<sa:stock><sa:symbol>` per item but feedparser keeps only the last, so symbols are collected
with a small per-item scan of the raw XML.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import feedparser

from daemon.models import ParseResult, RawEntry

_BOM = b"\xef\xbb\xbf"
_HTML_START = re.compile(rb"^\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>]|head[\s>]|body[\s>])", re.I | re.S)
# "items 2.02 and 9.01", "items 1.01, 2.03, 8.01and9.01", "Item 2.02: Results of ..."
_ITEM_NO = re.compile(r"(?<![\d.])([1-9]\.\d{2})(?!\d)")
# A category that is a ticker: "MSFT", "NASDAQ:KC", "NYSE: BRK.B", "HKEX:3896"
_TICKER_TAG = re.compile(r"^(?:([A-Za-z][A-Za-z ]{1,20}):\s*)?([A-Z][A-Z0-9]{0,5}(?:[.\-][A-Z])?|\d{3,5})$")
_EXCHANGES = frozenset(
    {"NASDAQ", "NYSE", "NYSE AMERICAN", "NYSE ARCA", "AMEX", "OTC", "OTCQX", "OTCQB", "TSX", "LSE", "HKEX", "SEHK"}
)
_SA_NS = re.compile(rb'xmlns:([A-Za-z_][\w.-]*)\s*=\s*["\']https?://(?:www\.)?seekingalpha\.com/api')
_ITEM_BLOCK = re.compile(rb"<item[\s>].*?</item\s*>", re.S)
# feedparser exceptions that still mean "this is a feed we read correctly"
_BENIGN_BOZO = ("CharacterEncodingOverride", "NonXMLContentType")


def parse_feed(body: bytes, *, content_type: str = "", url: str = "") -> ParseResult:
    """Read one fetched document. Never raises: unreadable input is ParseResult(error=...)."""
    stripped = body.lstrip(b" \t\r\n")
    if stripped.startswith(_BOM):
        stripped = stripped[len(_BOM) :].lstrip()
    if not stripped:
        return ParseResult(entries=(), error="empty document")
    if "json" in content_type.lower() or stripped[:1] in (b"{", b"["):
        return _parse_json_feed(stripped)
    if _HTML_START.match(stripped[:4096]):
        return ParseResult(entries=(), error="an HTML page, not a feed")
    try:
        return _parse_xml(body, content_type, url)
    except Exception as exc:  # feedparser has crashed on odd input before; a source error, not ours
        return ParseResult(entries=(), error=f"parser failure: {type(exc).__name__}: {exc}")


def _parse_xml(body: bytes, content_type: str, url: str) -> ParseResult:
    headers: dict[str, str] = {}
    if content_type:
        headers["content-type"] = content_type
    if url:
        headers["content-location"] = url  # base for relative links
    d = feedparser.parse(body, response_headers=headers or None)
    feed_title = str(d.feed.get("title", "") or "")
    bozo_exc = d.get("bozo_exception") if d.get("bozo") else None
    problem = f"{type(bozo_exc).__name__}: {bozo_exc}" if bozo_exc is not None else None
    version = d.get("version") or ""

    if not d.entries:
        if bozo_exc is not None and not (version and type(bozo_exc).__name__ in _BENIGN_BOZO):
            return ParseResult(entries=(), feed_title=feed_title, error=f"not a readable feed: {problem}")
        if not version:
            return ParseResult(entries=(), feed_title=feed_title, error="not a feed (no RSS/Atom/RDF root)")
        return ParseResult(entries=(), feed_title=feed_title, warning=problem)

    sa_symbols = _seeking_alpha_symbols(body, len(d.entries))
    entries = tuple(_entry(e, sa_symbols[i] if sa_symbols is not None else ()) for i, e in enumerate(d.entries))
    return ParseResult(entries=entries, feed_title=feed_title, warning=problem)


def _entry(e: Mapping[str, Any], sa_symbols: tuple[str, ...]) -> RawEntry:
    link = str(e.get("feedburner_origlink") or e.get("link") or "")
    tags = tuple(str(t.get("term") or "").strip() for t in e.get("tags") or () if t.get("term"))
    form, items = _filing(e)
    hints: list[str] = list(sa_symbols)
    if not sa_symbols and e.get("sa_symbol"):
        hints.append(str(e["sa_symbol"]).strip())
    if e.get("ndaq_issuesymbol"):
        hints.append(str(e["ndaq_issuesymbol"]).strip())
    if form is None:  # EDGAR categories are form types ("UPLOAD", "S-1"), never tickers
        hints.extend(_ticker_tags(tags))
    return RawEntry(
        title=str(e.get("title") or ""),
        link=link,
        guid=str(e.get("id") or ""),
        summary_html=_summary(e),
        published=_when(e.get("published_parsed") or e.get("updated_parsed")),
        author=str(e.get("author") or ""),
        tags=tags,
        ticker_hints=tuple(dict.fromkeys(h.upper() for h in hints if h)),
        form=form,
        filing_items=items,
    )


def _summary(e: Mapping[str, Any]) -> str:
    """Summary as HTML; a plain-text body is escaped so normalize can treat everything as HTML."""
    candidates: list[tuple[str, str]] = []
    detail = e.get("summary_detail") or {}
    if e.get("summary"):
        candidates.append((str(e["summary"]), str(detail.get("type") or "text/html")))
    for c in e.get("content") or ():
        if c.get("value"):
            candidates.append((str(c["value"]), str(c.get("type") or "text/html")))
    if not candidates:
        return ""
    value, kind = candidates[0]
    return html.escape(value, quote=False) if kind == "text/plain" else value


def _when(parsed: time.struct_time | None) -> datetime | None:
    """feedparser's *_parsed are UTC struct_times; anything unusable is None, not an exception."""
    if not parsed:
        return None
    try:
        return datetime(*parsed[:6], tzinfo=UTC)
    except (TypeError, ValueError):
        return None


def _filing(e: Mapping[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    """Form type and 8-K item numbers of an EDGAR company-feed entry, else (None, ())."""
    form = str(e.get("filing-type") or "").strip() or None
    if form is None:
        for t in e.get("tags") or ():
            scheme = str(t.get("scheme") or "")
            if "sec.gov" in scheme or str(t.get("label") or "").lower() == "form type":
                form = str(t.get("term") or "").strip() or None
                break
    if form is None:
        return None, ()
    source = str(e.get("items-desc") or "")
    if not source and form.upper().startswith("8-K"):
        source = " ".join(re.findall(r"Item\s+[1-9]\.\d{2}", str(e.get("summary") or ""), re.I))
    return form, tuple(dict.fromkeys(_ITEM_NO.findall(source)))


def _ticker_tags(tags: Iterable[str]) -> list[str]:
    out: list[str] = []
    for tag in tags:
        m = _TICKER_TAG.match(tag.strip())
        if not m:
            continue
        exchange, symbol = m.group(1), m.group(2)
        if exchange is not None and exchange.strip().upper() not in _EXCHANGES:
            continue
        if exchange is None and not symbol.isalpha():
            continue  # a bare number is a year or an id, not a ticker
        out.append(symbol)
    return out


def _seeking_alpha_symbols(body: bytes, n_entries: int) -> list[tuple[str, ...]] | None:
    """Every <sa:symbol> of each item, in item order; None when not an SA feed or misaligned."""
    ns = _SA_NS.search(body[:4096])
    if ns is None:
        return None
    prefix = re.escape(ns.group(1))
    symbol = re.compile(rb"<" + prefix + rb":symbol\s*>\s*([^<\s]+)\s*</" + prefix + rb":symbol\s*>")
    blocks = _ITEM_BLOCK.findall(body)
    if len(blocks) != n_entries:
        return None
    return [tuple(dict.fromkeys(s.decode("ascii", "replace") for s in symbol.findall(b))) for b in blocks]


def _parse_json_feed(body: bytes) -> ParseResult:
    """JSON Feed 1.0/1.1 (https://jsonfeed.org/version/1.1)."""
    try:
        doc = json.loads(body.decode("utf-8-sig", errors="replace"))
    except ValueError as exc:
        return ParseResult(entries=(), error=f"invalid JSON: {exc}")
    if not isinstance(doc, dict) or not str(doc.get("version", "")).startswith("https://jsonfeed.org/version/"):
        return ParseResult(entries=(), error="JSON document is not a JSON Feed")
    items = doc.get("items")
    if not isinstance(items, list):
        return ParseResult(entries=(), feed_title=str(doc.get("title") or ""), error="JSON Feed without items")
    entries: list[RawEntry] = []
    for it in items:
        if not isinstance(it, dict):
            continue
        summary = it.get("content_html") or it.get("summary") or ""
        if not summary and it.get("content_text"):
            summary = html.escape(str(it["content_text"]), quote=False)
        authors = it.get("authors") or ([it["author"]] if isinstance(it.get("author"), dict) else [])
        author = ", ".join(str(a.get("name")) for a in authors if isinstance(a, dict) and a.get("name"))
        tags = tuple(str(t) for t in it.get("tags") or () if isinstance(t, str | int))
        entries.append(
            RawEntry(
                title=str(it.get("title") or ""),
                link=str(it.get("url") or it.get("external_url") or ""),
                guid=str(it.get("id") or ""),
                summary_html=str(summary),
                published=_iso(it.get("date_published") or it.get("date_modified")),
                author=author,
                tags=tags,
                ticker_hints=tuple(dict.fromkeys(_ticker_tags(tags))),
            )
        )
    return ParseResult(entries=tuple(entries), feed_title=str(doc.get("title") or ""))


def _iso(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
