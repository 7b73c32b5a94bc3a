"""Digest, alert and confirmation emails: models.Digest in, subject + plain text + HTML out.

This is the only module that imports Jinja2. Everything a template shows is computed here into
small view objects (times already in the subscriber's zone, labels already looked up), so an
operator who overrides a template only arranges values and cannot get the safety wrong:

* feed text is untrusted: Jinja2 autoescapes the HTML templates, `safe_url` lets only http(s)
  links into href, and the final HTML goes through nh3 with a fixed allowlist, so no script, no
  on* handler and no javascript: URL survives even if a template itself carried one;
* styles are inline in the templates (mail clients drop most of <style>; see
  templates/_styles.html.j2), while the dark-mode @media rules stay in a <style> for the clients
  that honour it; an operator template with plain class rules in <style> is inlined by css-inline;
* the HTML is pure ASCII (character references) with short lines, so it is mailed as 7bit;
* a story is in hundreds of digests: templates render it through `html_fragment(m.entry, e)` /
  `text_fragment(m.entry, e)`, which render and sanitize it once per Renderer and splice the
  clean bytes into each (separately sanitized) page, instead of sanitizing every page whole;
* Gmail clips HTML over ~102 KB, so a digest is kept under MAX_HTML_BYTES by moving entries
  from the tail of the largest sections into the "and N more" overflow, never silently.
"""

from __future__ import annotations

import contextlib
import functools
import html as html_lib
import os
import re
import secrets
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import css_inline
import jinja2
import nh3
from markupsafe import Markup

from daemon.bundled import bundled_dir
from daemon.models import CATEGORY_LABELS, Digest, DigestEntry, Explanation, Severity, TickerSection

MAX_HTML_BYTES = 90 * 1024
MAX_ENTRIES = 150  # per message, before any size measurement
RELOAD_CHECK_S = 2.0  # how often edited templates are looked for
FRAGMENT_CACHE = 20_000  # rendered fragments kept per Renderer (one per story and zone, typically)
TITLE_MAX = 240
SUMMARY_MAX = 280
TEXT_WIDTH = 78

FIELD_LABELS: dict[str, str] = {
    "title": "headline",
    "headline": "headline",
    "summary": "summary",
    "text": "text",
    "form": "form type",
    "filing_items": "8-K items",
    "items": "8-K items",
    "source": "source",
    "ticker": "ticker",
    "tickers": "tickers",
    "price": "price",
    "url": "link",
}

_ALLOWED_TAGS = {
    "table", "thead", "tbody", "tfoot", "tr", "td", "th", "a", "p", "div", "span", "br", "hr",
    "strong", "b", "em", "i", "small", "h1", "h2", "h3", "h4", "ul", "ol", "li", "center",
}  # fmt: skip
_ALLOWED_ATTRIBUTES = {
    "*": {"style", "class", "align", "valign", "width", "height", "bgcolor", "dir", "lang", "role", "id"},
    "table": {"cellpadding", "cellspacing", "border"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "a": {"href", "title", "target"},
}
_ALLOWED_STYLE_PROPERTIES = {
    "color", "background-color", "font", "font-family", "font-size", "font-weight", "font-style",
    "line-height", "letter-spacing", "text-align", "text-decoration", "text-transform", "white-space",
    "word-break", "overflow-wrap", "vertical-align", "display", "width", "max-width", "min-width",
    "height", "max-height", "overflow", "opacity", "visibility", "mso-hide", "margin", "margin-top",
    "margin-right", "margin-bottom", "margin-left", "padding", "padding-top", "padding-right",
    "padding-bottom", "padding-left", "border", "border-top", "border-right", "border-bottom",
    "border-left", "border-color", "border-style", "border-width", "border-radius",
    "border-collapse", "border-spacing", "table-layout",
}  # fmt: skip
_URL_SCHEMES = {"http", "https", "mailto"}

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_SPACES = re.compile(r"\s+")
_BLANK_RUNS = re.compile(r"\n{3,}")
_STYLE_BLOCK = re.compile(r"<style[^>]*>(.*?)</style\s*>", re.S | re.I)
_BODY = re.compile(r"<body[^>]*>(.*)</body\s*>", re.S | re.I)
_HEAD = re.compile(r"<head[^>]*>.*?</head\s*>", re.S | re.I)
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
HTML_LINE_MAX = 900  # characters per HTML line; mail allows 998 octets before the CRLF
_UNSAFE_CSS = re.compile(r"[<>]|expression\s*\(|javascript:|@import|url\s*\(|behavior\s*:|-moz-binding", re.I)


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str
    dropped: int = 0  # entries moved into overflow to keep the HTML under the size cap


# --------------------------------------------------------------------------- views


@dataclass(frozen=True, slots=True)
class EntryView:
    title: str
    url: str  # "" when the feed gave no usable http(s) link
    source: str
    time: str
    categories: tuple[str, ...]
    severity: str
    severe: bool
    why: tuple[str, ...]
    summary: str
    also_reported_by: str
    move_since: str  # "+4.2% since" or ""


@dataclass(frozen=True, slots=True)
class SectionView:
    symbol: str
    name: str
    price_line: str  # "" when no price is known
    entries: tuple[EntryView, ...]
    overflow: int


@dataclass(frozen=True, slots=True)
class DigestView:
    subject: str
    kind: str
    tz: str
    generated: str
    sent: str
    sections: tuple[SectionView, ...]
    total_entries: int
    more_url: str
    preferences_url: str
    unsubscribe_url: str
    hidden_sections: int  # whole tickers left out for size
    hidden_entries: int  # their stories


def bundled_templates_dir() -> Path:
    """The templates shipped with keynews (the checkout's templates/, or a wheel's share/keynews)."""
    return bundled_dir("templates")


def clean_text(value: str, limit: int = 0) -> str:
    """One line of feed text: control characters and newlines gone, whitespace collapsed, clamped."""
    text = _SPACES.sub(" ", _CONTROL.sub(" ", value or "")).strip()
    if limit and len(text) > limit:
        cut = text[: limit - 1]
        space = cut.rfind(" ")
        if space > limit // 2:
            cut = cut[:space]
        text = cut.rstrip(" ,;:.-") + "…"
    return text


def safe_url(value: str | None) -> str:
    """An href only for absolute http(s)/mailto URLs; anything else (javascript:, data:, junk) is "#"."""
    url = clean_text(value or "")
    if not url or " " in url:
        return "#"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "#"
    if parts.scheme.lower() in ("http", "https") and parts.netloc:
        return url
    if parts.scheme.lower() == "mailto" and parts.path:
        return url
    return "#"


def _text_url(value: str | None) -> str:
    url = safe_url(value)
    return "" if url == "#" else url


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        # A bad zone string in a subscriber row must not stop their digest.
        return ZoneInfo("UTC")


def format_time(when: datetime, tz: str) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    local = when.astimezone(_zone(tz))
    return f"{local:%b} {local.day}, {local:%H:%M} {local.tzname() or tz}"


def format_pct(value: float) -> str:
    return f"{value:+.1f}%"


def price_line(section: TickerSection) -> str:
    if section.last_price is None:
        return ""
    line = f"Last {section.last_price:,.2f}"
    if section.day_change_pct is not None:
        line += f" ({format_pct(section.day_change_pct)} today)"
    return line


def why_lines(explanations: Sequence[Explanation], rule_titles: Sequence[str]) -> tuple[str, ...]:
    """One line per rule: its title and the words that matched where.

    rule_titles[i] is taken as the title of the i-th distinct rule_id in explanation order; titles
    beyond the explained rules are shown alone.
    """
    groups: dict[str, list[str]] = {}
    for exp in explanations:
        words = clean_text(exp.text, 80)
        where = FIELD_LABELS.get(exp.field, clean_text(exp.field, 30))
        part = f'"{words}" in {where}' if words else f"in {where}"
        parts = groups.setdefault(exp.rule_id, [])
        if part not in parts:
            parts.append(part)
    lines: list[str] = []
    for i, (rule_id, parts) in enumerate(groups.items()):
        title = clean_text(rule_titles[i], 80) if i < len(rule_titles) else clean_text(rule_id, 80)
        lines.append(f"{title} — matched {', '.join(parts)}")
    lines.extend(clean_text(t, 80) for t in rule_titles[len(groups) :])
    return tuple(line for line in lines if line)


def entry_view(entry: DigestEntry, tz: str) -> EntryView:
    return EntryView(
        title=clean_text(entry.title, TITLE_MAX) or "(untitled)",
        url=_text_url(entry.url),
        source=clean_text(entry.source, 60),
        time=format_time(entry.published_at, tz),
        categories=tuple(CATEGORY_LABELS.get(c, clean_text(c, 30)) for c in entry.categories),
        severity=Severity.parse(entry.severity).label,
        severe=Severity.parse(entry.severity) >= Severity.HIGH,
        why=why_lines(entry.explanations, entry.rule_titles),
        summary=clean_text(entry.summary, SUMMARY_MAX),
        also_reported_by=", ".join(s for s in (clean_text(x, 60) for x in entry.also_reported_by) if s),
        move_since=f"{format_pct(entry.move_since_pct)} since" if entry.move_since_pct is not None else "",
    )


@functools.lru_cache(maxsize=4096)
def _entry_view_cached(entry: DigestEntry, tz: str) -> EntryView:
    # Cached: a story appears in many subscribers' digests, and its view depends only on it and the zone.
    return entry_view(entry, tz)


def section_view(section: TickerSection, tz: str) -> SectionView:
    return SectionView(
        symbol=clean_text(section.symbol, 20),
        name=clean_text(section.name, 80),
        price_line=price_line(section),
        entries=tuple(_entry_view_cached(e, tz) for e in section.entries),
        overflow=max(0, section.overflow),
    )


def digest_view(
    digest: Digest,
    sections: Sequence[TickerSection],
    *,
    now: datetime,
    hidden_sections: int = 0,
    hidden_entries: int = 0,
    view_of: Callable[[TickerSection, str], SectionView] = section_view,
) -> DigestView:
    views = tuple(view_of(s, digest.tz) for s in sections)
    return DigestView(
        subject=clean_text(digest.subject, 200),
        kind=digest.kind,
        tz=digest.tz,
        generated=format_time(digest.generated_at, digest.tz),
        sent=format_time(now, digest.tz),
        sections=views,
        total_entries=sum(len(v.entries) for v in views),
        more_url=_text_url(digest.more_url),
        preferences_url=_text_url(digest.preferences_url),
        unsubscribe_url=_text_url(digest.unsubscribe_url),
        hidden_sections=hidden_sections,
        hidden_entries=hidden_entries,
    )


# --------------------------------------------------------------------------- filters


def _wrap(text: str, width: int = TEXT_WIDTH, indent: str = "", first: str | None = None) -> str:
    """textwrap that never breaks a long word, so URLs stay clickable in the text part."""
    return _wrap_str(str(text), width, indent, first)


@functools.lru_cache(maxsize=8192)
def _wrap_str(text: str, width: int, indent: str, first: str | None) -> str:
    # Cached: the same story is wrapped for every subscriber whose digest carries it.
    return textwrap.fill(
        text,
        width=width,
        initial_indent=indent if first is None else first,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    return singular if count == 1 else (plural or singular + "s")


# --------------------------------------------------------------------------- HTML finishing


_CLEANER = nh3.Cleaner(
    tags=_ALLOWED_TAGS,
    attributes=_ALLOWED_ATTRIBUTES,
    url_schemes=_URL_SCHEMES,
    link_rel=None,
    strip_comments=True,
    filter_style_properties=_ALLOWED_STYLE_PROPERTIES,
)  # built once: nh3.clean() with these options rebuilds the allowlists on every call (~20 us)


def sanitize_html_fragment(fragment: str) -> str:
    return _CLEANER.clean(fragment)


@functools.lru_cache(maxsize=64)
def _has_plain_rules(css: str) -> bool:
    """True when a <style> holds rules outside @-blocks: a template that relies on inlining."""
    css = _CSS_COMMENT.sub("", css)
    depth, start = 0, 0
    for i, ch in enumerate(css):
        if ch == "{":
            if depth == 0 and not css[start:i].strip().startswith("@"):
                return True
            depth += 1
        elif ch == "}":
            depth = max(depth - 1, 0)
            if depth == 0:
                start = i + 1
    return False


def _css_ascii(css: str) -> str:
    # <style> is raw text: character references do not work there, CSS escapes do
    return _NON_ASCII.sub(lambda m: f"\\{ord(m.group(0)):x} ", css)


def short_lines(html: str, limit: int = HTML_LINE_MAX) -> str:
    """Break lines over `limit` characters at a space, so the part can go as 7bit (998 octets).

    A space becomes a newline: the same whitespace to HTML and CSS. A line without a usable
    space (a URL of a thousand characters) stays long; the message builder then falls back to
    quoted-printable for that mail.
    """
    if max(map(len, html.split("\n"))) <= limit:
        return html
    out: list[str] = []
    for line in html.split("\n"):
        while len(line) > limit:
            cut = line.rfind(" ", 0, limit)
            if cut <= 0:
                break
            out.append(line[:cut])
            line = line[cut + 1 :]
        out.append(line)
    return "\n".join(out)


def finish_html(document: str, title: str) -> str:
    """Rebuild the document around an nh3-clean body; pure ASCII, short lines.

    The bundled templates write their styles inline and keep only @media rules in <style>, so
    nothing needs inlining; a template with plain class rules in <style> is inlined with
    css-inline first, as before. The head is not trusted from the template: it is rebuilt from
    fixed parts plus the @media rules (dropped whole if they carry anything script-like).
    Non-ASCII becomes character references, so the mail part needs no transfer encoding: HTML is
    full of `=`, which quoted-printable would triple.
    """
    css = "\n".join(block.strip() for block in _STYLE_BLOCK.findall(document) if block.strip())
    if _has_plain_rules(css):
        document = css_inline.inline(document, keep_at_rules=True, load_remote_stylesheets=False)
        css = "\n".join(block.strip() for block in _STYLE_BLOCK.findall(document) if block.strip())
    if _UNSAFE_CSS.search(css):
        css = ""
    body_match = _BODY.search(document)
    body = body_match.group(1) if body_match else _STYLE_BLOCK.sub("", _HEAD.sub("", document))
    clean_body = sanitize_html_fragment(body).encode("ascii", "xmlcharrefreplace").decode("ascii")
    style = f"<style>{_css_ascii(css)}</style>" if css else ""
    head_title = html_lib.escape(clean_text(title, 200)).encode("ascii", "xmlcharrefreplace").decode("ascii")
    return short_lines(
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        '<meta name="supported-color-schemes" content="light dark">'
        f"<title>{head_title}</title>{style}</head>"
        f'<body style="margin:0;padding:0">{clean_body}</body></html>\n'
    )


# --------------------------------------------------------------------------- renderer


class Renderer:
    """Jinja2 environment with operator overrides in front of the bundled templates."""

    def __init__(
        self,
        override_dir: Path | None = None,
        *,
        max_html_bytes: int = MAX_HTML_BYTES,
        reload_check_s: float = RELOAD_CHECK_S,
    ) -> None:
        self._dirs = [d for d in (override_dir, bundled_templates_dir()) if d is not None]
        loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(str(d)) for d in self._dirs]
        self.max_html_bytes = max_html_bytes
        # Jinja's auto_reload stats every template (and every imported one) on every render: ~7
        # stats a mail. Instead the folders are looked at once every reload_check_s, and an edit
        # drops the compiled templates and the fragment cache together.
        self.reload_check_s = reload_check_s
        # Pages hold placeholders into the fragment cache until spliced: one page at a time.
        self._lock = threading.RLock()
        self._stamp = self._template_stamp()
        self._checked = time.monotonic()
        self.env = jinja2.Environment(
            auto_reload=False,
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2", "html"), default=False),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        # Fragments: (macro, args) -> index into _html_parts / the text. A placeholder element
        # carrying this Renderer's random nonce stands in the page while it is sanitized; feed
        # text is escaped, so it cannot forge one.
        self._nonce = secrets.token_hex(8)
        self._slot = re.compile(rf'<div id="kn-slot-{self._nonce}-(\d+)"></div>')
        self._html_index: dict[tuple[Any, tuple[Any, ...]], int] = {}
        self._html_parts: list[str] = []
        self._text_parts: dict[tuple[Any, tuple[Any, ...]], str] = {}
        # The digest builder hands the same TickerSection object to every subscriber who gets it.
        self._section_views: dict[tuple[int, str], tuple[TickerSection, SectionView]] = {}
        self.env.globals["html_fragment"] = self._html_fragment
        self.env.globals["text_fragment"] = self._text_fragment
        self.env.filters["safe_url"] = safe_url
        self.env.filters["wrap"] = _wrap
        self.env.filters["plural"] = _plural
        self.env.filters["pct"] = format_pct

    def _template_stamp(self) -> tuple[tuple[str, int, int], ...]:
        found: list[tuple[str, int, int]] = []
        for top in self._dirs:
            for folder, _dirs, files in os.walk(top):
                for name in files:
                    path = os.path.join(folder, name)
                    with contextlib.suppress(OSError):
                        st = os.stat(path)
                        found.append((path, st.st_mtime_ns, st.st_size))
        return tuple(sorted(found))

    def _refresh(self) -> None:
        """Pick up edited templates; only ever called before a template starts rendering."""
        now = time.monotonic()
        if now - self._checked < self.reload_check_s:
            return
        self._checked = now
        stamp = self._template_stamp()
        if stamp != self._stamp:
            self._stamp = stamp
            if self.env.cache is not None:
                self.env.cache.clear()
            self._html_index.clear()
            self._html_parts.clear()
            self._text_parts.clear()

    def _render(self, name: str, **context: Any) -> str:
        self._refresh()
        return self.env.get_template(name).render(**context)

    def _html_fragment(self, macro: Callable[..., Any], *args: Any) -> Markup:
        """`macro(*args)` rendered and sanitized once; a placeholder for it in this page.

        Arguments must be hashable values (the frozen view objects are); a template edit makes new
        macro objects, so stale fragments are never reused.
        """
        key = (macro, args)
        index = self._html_index.get(key)
        if index is None:
            fragment = sanitize_html_fragment(str(macro(*args)))
            index = len(self._html_parts)
            self._html_parts.append(fragment.encode("ascii", "xmlcharrefreplace").decode("ascii"))
            self._html_index[key] = index
        return Markup(f'<div id="kn-slot-{self._nonce}-{index}"></div>')

    def _text_fragment(self, macro: Callable[..., Any], *args: Any) -> str:
        key = (macro, args)
        text = self._text_parts.get(key)
        if text is None:
            text = self._text_parts[key] = str(macro(*args))
        return text

    def _trim_fragments(self) -> None:
        """Called between pages only: a page's placeholders must all point into the same cache."""
        if len(self._html_parts) >= FRAGMENT_CACHE:
            self._html_index.clear()
            self._html_parts.clear()
        if len(self._text_parts) >= FRAGMENT_CACHE:
            self._text_parts.clear()
        if len(self._section_views) >= FRAGMENT_CACHE:
            self._section_views.clear()

    def _section_view(self, section: TickerSection, tz: str) -> SectionView:
        key = (id(section), tz)
        hit = self._section_views.get(key)
        if hit is not None and hit[0] is section:  # the entry pins the section: its id is not reused
            return hit[1]
        view = section_view(section, tz)
        self._section_views[key] = (section, view)
        return view

    def _splice(self, html: str) -> str:
        if not self._html_parts:
            return html
        parts = self._html_parts
        return short_lines(self._slot.sub(lambda m: parts[int(m.group(1))], html))

    def render_page(self, name: str, **context: Any) -> str:
        """A subscriber web page (templates/web/*.html.j2): autoescaped like the mail templates."""
        with self._lock:
            return self._render(f"web/{name}.html.j2", **context)

    def _render_pair(self, base: str, subject: str, **context: Any) -> tuple[str, str]:
        with self._lock:
            text = self._render(f"{base}.txt.j2", subject=subject, **context)
            text = "\n".join(map(str.rstrip, text.splitlines())).strip("\n") + "\n"
            text = _BLANK_RUNS.sub("\n\n", text)
            html = self._splice(finish_html(self._render(f"{base}.html.j2", subject=subject, **context), subject))
            return text, html

    def render(self, digest: Digest, *, now: datetime) -> Rendered:
        if digest.kind == "alert":
            return self.render_alert(digest, now=now)
        return self.render_digest(digest, now=now)

    def render_digest(self, digest: Digest, *, now: datetime) -> Rendered:
        return self._render_sized("digest", digest, now)

    def render_alert(self, digest: Digest, *, now: datetime) -> Rendered:
        return self._render_sized("alert", digest, now)

    def render_confirm(self, email: str, confirm_url: str, tickers: Iterable[str]) -> Rendered:
        subject = "Confirm your keynews subscription"
        symbols = tuple(s for s in (clean_text(t, 20) for t in tickers) if s)
        text, html = self._render_pair(
            "confirm",
            subject,
            email=clean_text(email, 254),
            confirm_url=_text_url(confirm_url),
            tickers=symbols,
        )
        return Rendered(subject=subject, text=text, html=html)

    def _render_sized(self, base: str, digest: Digest, now: datetime) -> Rendered:
        """Render; while the HTML is over the cap, move tail entries into overflow and render again."""
        with self._lock:
            self._trim_fragments()
            subject = clean_text(digest.subject, 200)
            cut = _Cut(list(digest.sections))
            if cut.total > MAX_ENTRIES:
                # No reader wants more, and it saves rendering thousands of entries only to drop them.
                cut.shrink(MAX_ENTRIES)
            for _ in range(40):
                view = digest_view(
                    digest,
                    cut.sections,
                    now=now,
                    hidden_sections=cut.hidden_sections,
                    hidden_entries=cut.hidden_entries,
                    view_of=self._section_view,
                )
                text, html = self._render_pair(base, subject, digest=view)
                size = len(html.encode("utf-8"))
                if size <= self.max_html_bytes:
                    break
                ratio = self.max_html_bytes / size * 0.95
                if cut.total > 0:
                    if not cut.shrink(min(cut.total - 1, int(cut.total * ratio))):
                        break  # one ticker, one story, still too large: send it as it is
                elif len(cut.sections) > 1:
                    cut.hide_from(max(1, min(len(cut.sections) - 1, int(len(cut.sections) * ratio))))
                else:
                    break  # one empty section and still too large: nothing left to move
            return Rendered(subject=subject, text=text, html=html, dropped=cut.dropped)


class _Cut:
    """The sections still shown, and the count of everything moved out of them (never lost)."""

    def __init__(self, sections: list[TickerSection]) -> None:
        self.sections = sections
        self.hidden_sections = 0
        self.hidden_entries = 0
        self.dropped = 0

    @property
    def total(self) -> int:
        return sum(len(s.entries) for s in self.sections)

    def hide_from(self, keep: int) -> None:
        for gone in self.sections[keep:]:
            self.hidden_sections += 1
            self.hidden_entries += len(gone.entries) + gone.overflow
            self.dropped += len(gone.entries)
        self.sections = self.sections[:keep]

    def shrink(self, target: int) -> bool:
        """Down to `target` entries: tail entries of the largest sections first, each ticker keeping
        its top story; when even one per ticker is too many, whole tickers from the tail."""
        before = self.total
        target = max(0, target)
        filled = sum(1 for s in self.sections if s.entries)
        if target < filled and len(self.sections) > 1:
            self.hide_from(max(1, min(len(self.sections) - 1, target)))
        else:
            self.sections = _trim_entries(self.sections, target)
            self.dropped += before - self.total
        return self.total < before


def _trim_entries(sections: list[TickerSection], target: int) -> list[TickerSection]:
    """Drop entries from the tail of the largest section until `target` remain, counting them.

    Every section keeps its top entry; whole tickers are the caller's next step.
    """
    entries = [list(s.entries) for s in sections]
    overflow = [s.overflow for s in sections]
    total = sum(len(e) for e in entries)
    while total > target:
        # the largest section; among equals the last one, so the top tickers keep their stories
        idx = max(range(len(entries)), key=lambda i: (len(entries[i]), i))
        if len(entries[idx]) <= 1:
            break
        entries[idx].pop()
        overflow[idx] += 1
        total -= 1
    return [replace(s, entries=tuple(e), overflow=o) for s, e, o in zip(sections, entries, overflow, strict=True)]
