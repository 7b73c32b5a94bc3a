"""Rendering: golden outputs, hostile feed text, size cap, operator overrides."""

from __future__ import annotations

import html as html_lib
import os
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import jinja2
import pytest
from render_fixtures import NOW, huge_digest, sample_alert, sample_digest

from daemon.mail.render import MAX_HTML_BYTES, Renderer, bundled_templates_dir, clean_text, safe_url, short_lines
from daemon.models import Digest, TickerSection

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
UPDATE = os.environ.get("KEYNEWS_UPDATE_GOLDEN") == "1"


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend((tag, k, v or "") for k, v in attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_html(html: str) -> _Collector:
    c = _Collector()
    c.feed(html)
    c.close()
    return c


def assert_html_safe(html: str) -> None:
    c = parse_html(html)
    assert "script" not in c.tags and "img" not in c.tags and "iframe" not in c.tags
    assert "<script" not in html.lower()
    assert not re.search(r"<[^>]*\son\w+\s*=", html, re.I), "event handler attribute in a tag"
    for tag, name, value in c.attrs:
        assert not name.startswith("on"), (tag, name)
        assert "javascript:" not in value.lower(), (tag, name, value)
        if name == "href":
            assert value == "#" or value.split(":", 1)[0] in ("http", "https", "mailto"), value


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"{path} missing: run with KEYNEWS_UPDATE_GOLDEN=1 and review it")
        path.write_text(actual, encoding="utf-8")
    assert actual == path.read_text(encoding="utf-8"), f"{name} differs (KEYNEWS_UPDATE_GOLDEN=1 to accept)"


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


def test_bundled_templates_found() -> None:
    d = bundled_templates_dir()
    for name in (
        "digest.html.j2",
        "digest.txt.j2",
        "alert.html.j2",
        "alert.txt.j2",
        "confirm.html.j2",
        "confirm.txt.j2",
    ):
        assert (d / name).is_file(), name


def test_digest_golden(renderer: Renderer) -> None:
    r = renderer.render_digest(sample_digest(), now=NOW)
    check_golden("digest.txt", r.text)
    check_golden("digest.html", r.html)
    assert r.subject == "keynews: AAPL results, MSFT 8-K 5.02 (+2 more)"


def test_alert_golden(renderer: Renderer) -> None:
    r = renderer.render(sample_alert(), now=NOW)
    check_golden("alert.txt", r.text)
    check_golden("alert.html", r.html)


def test_digest_content(renderer: Renderer) -> None:
    r = renderer.render_digest(sample_digest(), now=NOW)
    for part in (r.text, html_lib.unescape(r.html)):
        # grouped by ticker in the caller's order
        assert part.index("AAPL") < part.index("MSFT")
        # 21:00 UTC is 16:00 in New York in March (EST)
        assert "Mar 4, 16:00 EST" in part
        assert "Last 189.12 (+1.4% today)" in part
        assert "+4.2% since" in part
        assert "Quarterly results — matched" in part
        assert "Reuters, GlobeNewswire" in part
        assert "dividends" in part and "results" in part  # category labels, not codes
        assert "8-K items" in part
    assert '"first quarter results" in headline' in r.text
    assert "&#34;first quarter results&#34; in headline" in r.html or '"first quarter results" in headline' in r.html
    assert "...and 3 more:\n  https://keynews.example.com/d/2025-03-04" in r.text
    assert '<a class="kn-link" href="https://keynews.example.com/d/2025-03-04"' in r.html
    assert ">and 3 more</a>" in r.html
    assert "Unsubscribe: https://keynews.example.com/u/tok123" in r.text
    assert 'href="https://keynews.example.com/u/tok123"' in r.html
    assert 'href="https://keynews.example.com/p/tok123"' in r.html


def test_html_is_email_shaped(renderer: Renderer) -> None:
    html = renderer.render_digest(sample_digest(), now=NOW).html
    assert '<meta name="color-scheme" content="light dark">' in html
    assert "@media (prefers-color-scheme: dark)" in html
    c = parse_html(html)
    assert "table" in c.tags
    # CSS is inlined: the light colours are on the elements themselves
    assert any(name == "style" and "color:#1f2328" in v.replace(" ", "") for _, name, v in c.attrs)
    assert len(html.encode()) < MAX_HTML_BYTES


def test_text_part_wrapped(renderer: Renderer) -> None:
    text = renderer.render_digest(huge_digest(3, 5), now=NOW).text
    for line in text.splitlines():
        if "http" not in line:
            assert len(line) <= 78, line


def test_hostile_feed_text_is_inert(renderer: Renderer) -> None:
    r = renderer.render_digest(sample_digest(), now=NOW)
    assert_html_safe(r.html)
    # shown as text, not dropped silently
    assert "&lt;script&gt;" in r.html
    # the javascript: story has no link at all (text) and no href (HTML)
    assert "javascript:" not in r.text.split("Business Wire · Mar 4, 15:00")[0].rsplit("*", 1)[1]
    # CR/LF in a summary cannot start a new line of its own
    assert "\nBcc:" not in r.text and "\n  Bcc:" not in r.text


def test_hostile_operator_template_is_sanitized(tmp_path: Path) -> None:
    (tmp_path / "digest.html.j2").write_text(
        '{% extends "_base.html.j2" %}{% block content %}'
        "<script>alert(1)</script><img src=x onerror=alert(2)>"
        '<a href="javascript:alert(3)" onclick="x()" onmouseover="y()">go</a>'
        '<a href="{{ digest.more_url }}">ok</a>'
        '<div style="background-image:url(javascript:alert(4));color:red">styled</div>'
        '<iframe src="https://evil.example"></iframe>'
        "{% endblock %}",
        encoding="utf-8",
    )
    html = Renderer(tmp_path).render_digest(sample_digest(), now=NOW).html
    assert_html_safe(html)
    assert 'href="https://keynews.example.com/d/2025-03-04"' in html
    assert "color:red" in html and "url(" not in html


def test_operator_override_wins_and_falls_back(tmp_path: Path) -> None:
    (tmp_path / "digest.txt.j2").write_text(
        "CUSTOM {{ subject }}\n{% for s in digest.sections %}{{ s.symbol }} {% endfor %}\n", encoding="utf-8"
    )
    r = Renderer(tmp_path).render_digest(sample_digest(), now=NOW)
    assert r.text == "CUSTOM keynews: AAPL results, MSFT 8-K 5.02 (+2 more)\nAAPL MSFT\n"
    # the HTML template was not overridden: the bundled one is used
    assert "Apple reports record first quarter results" in r.html


def test_strict_undefined_in_template(tmp_path: Path) -> None:
    (tmp_path / "digest.txt.j2").write_text("{{ digest.no_such_field }}\n", encoding="utf-8")
    with pytest.raises(jinja2.UndefinedError):
        Renderer(tmp_path).render_digest(sample_digest(), now=NOW)


def _visible_entries(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.startswith("* "))


def test_huge_digest_stays_under_cap_and_counts_overflow(renderer: Renderer) -> None:
    digest = huge_digest(10, 60)
    total = sum(len(s.entries) for s in digest.sections)
    r = renderer.render_digest(digest, now=NOW)
    assert len(r.html.encode()) <= MAX_HTML_BYTES
    assert r.dropped > 0
    visible = _visible_entries(r.text)
    assert visible + r.dropped == total
    overflow = sum(int(n) for n in re.findall(r"\.\.\.and (\d+) more", r.text))
    assert overflow == r.dropped
    html_overflow = sum(int(n) for n in re.findall(r">and (\d+) more</a>", r.html))
    assert html_overflow == r.dropped
    assert visible > 20  # the cap trims, it does not gut the digest


def test_many_tickers_hide_whole_sections_counted(renderer: Renderer) -> None:
    small = Renderer(max_html_bytes=20_000)
    digest = huge_digest(120, 1)
    r = small.render_digest(digest, now=NOW)
    assert len(r.html.encode()) <= 20_000
    m = re.search(r"and (\d+) tickers with (\d+) stories", r.text)
    assert m, r.text[-600:]
    shown = r.text.count("\n" + "=" * 78 + "\nT")
    assert shown + int(m.group(1)) == 120
    assert _visible_entries(r.text) + int(m.group(2)) == 120
    assert renderer  # the default renderer is untouched by the small one


def test_bad_timezone_falls_back_to_utc(renderer: Renderer) -> None:
    digest = replace(sample_digest(), tz="Mars/Olympus_Mons")
    r = renderer.render_digest(digest, now=NOW)
    assert "Mar 4, 21:00 UTC" in r.text


def test_empty_section_and_missing_urls(renderer: Renderer) -> None:
    digest = Digest(
        subscriber_email="a@example.com",
        kind="digest",
        window_key="w",
        generated_at=NOW,
        tz="UTC",
        sections=(TickerSection(symbol="XYZ", name="", entries=(), overflow=2),),
        subject="s",
    )
    r = renderer.render_digest(digest, now=NOW)
    assert "...and 2 more\n" in r.text
    assert "and 2 more" in r.html
    assert "Unsubscribe" not in r.text
    assert_html_safe(r.html)


def test_confirm(renderer: Renderer) -> None:
    r = renderer.render_confirm("ann@example.com", "https://keynews.example.com/c/tok", ["AAPL", "MSFT"])
    assert r.subject == "Confirm your keynews subscription"
    assert "https://keynews.example.com/c/tok" in r.text
    assert 'href="https://keynews.example.com/c/tok"' in r.html
    assert "for AAPL, MSFT." in " ".join(r.text.split()) and "AAPL, MSFT" in r.html
    bad = renderer.render_confirm("ann@example.com", "javascript:alert(1)", [])
    assert "javascript:" not in bad.html and "javascript:" not in bad.text
    assert_html_safe(bad.html)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://a.example/x?y=1", "https://a.example/x?y=1"),
        ("http://a.example", "http://a.example"),
        ("mailto:u@example.com", "mailto:u@example.com"),
        ("javascript:alert(1)", "#"),
        ("JaVaScRiPt:alert(1)", "#"),
        (" javascript:alert(1)", "#"),
        ("java\nscript:alert(1)", "#"),
        ("data:text/html,<script>", "#"),
        ("/relative/path", "#"),
        ("https:///nohost", "#"),
        ("", "#"),
        (None, "#"),
    ],
)
def test_safe_url(url: str | None, expected: str) -> None:
    assert safe_url(url) == expected


def test_clean_text_clamps_and_flattens() -> None:
    assert clean_text("a\r\nb\tc\x00d") == "a b c d"
    out = clean_text("word " * 100, 50)
    assert len(out) <= 50 and out.endswith("…")


def test_html_is_ascii_with_short_lines(renderer: Renderer) -> None:
    """So the mail part goes as 7bit: no quoted-printable tripling every `=` of the markup."""
    entry = replace(
        sample_digest().sections[0].entries[0],
        title="Nestlé — résultats annuels ✓ 📈 " * 20,
        summary="Zürich " * 200,
        source="Agence France-Presse — 東京",
    )
    section = replace(sample_digest().sections[0], entries=(entry,) * 3, name="Nestlé S.A.")
    r = renderer.render_digest(replace(sample_digest(), sections=(section,), subject="Nestlé ✓"), now=NOW)
    assert r.html.isascii()
    assert all(len(line) <= 998 for line in r.html.splitlines())
    assert "Nestlé — résultats annuels ✓ 📈" in html_lib.unescape(r.html)
    assert "<title>Nestl&#233; &#10003;</title>" in r.html


def test_short_lines_breaks_at_spaces_only() -> None:
    line = "<p>" + "word " * 400 + "</p>"
    out = short_lines(line, 100)
    assert all(len(x) <= 100 for x in out.splitlines())
    assert out.replace("\n", " ") == line
    url = "https://x.example/" + "a" * 300
    # between the attributes is fine; the URL itself is never cut (the mail builder falls back to QP)
    assert short_lines(f"<a href='{url}'>", 100) == f"<a\nhref='{url}'>"


def test_operator_template_with_class_rules_is_still_inlined(tmp_path: Path) -> None:
    (tmp_path / "digest.html.j2").write_text(
        "<html><head><style>.x { color: #123456; } h1 { font-family: 微软雅黑; }"
        "@media (prefers-color-scheme: dark) { .x { color: #abcdef !important; } }</style></head>"
        '<body><h1 class="x">{{ subject }}</h1></body></html>',
        encoding="utf-8",
    )
    html = Renderer(tmp_path).render_digest(sample_digest(), now=NOW).html
    assert re.search(r'<h1 class="x" style="[^"]*color:#123456', html), html
    assert "@media (prefers-color-scheme: dark)" in html and "#abcdef" in html
    assert html.isascii()


def test_bundled_templates_need_no_inlining(renderer: Renderer) -> None:
    """Their <style> holds only @media rules: every other look is written inline by the templates."""
    source = (bundled_templates_dir() / "_base.html.j2").read_text(encoding="utf-8")
    css = source.split("\n<style>\n", 1)[1].split("</style>", 1)[0]
    assert css.strip().startswith("@media") and css.strip().endswith("}")
    html = renderer.render_digest(sample_digest(), now=NOW).html
    c = parse_html(html)
    styled = {tag for tag, name, _ in c.attrs if name == "style"}
    assert {"table", "td", "h1", "h2", "div", "span", "a"} <= styled


def test_hostile_operator_entry_macro_is_sanitized_in_fragments(tmp_path: Path) -> None:
    """An overridden entry macro goes through the fragment cache: its output is sanitized too."""
    (tmp_path / "_macros.html.j2").write_text(
        (bundled_templates_dir() / "_macros.html.j2")
        .read_text(encoding="utf-8")
        .replace(
            "{% macro entry(e) -%}",
            '{% macro entry(e) -%}<script>alert(1)</script><a href="javascript:x()" onclick="y()">bad</a>',
        ),
        encoding="utf-8",
    )
    renderer = Renderer(tmp_path)
    first = renderer.render_digest(sample_digest(), now=NOW)
    second = renderer.render_digest(sample_digest(), now=NOW)  # served from the fragment cache
    for r in (first, second):
        assert_html_safe(r.html)
        assert r.html.count(">bad</a>") == sum(len(s.entries) for s in sample_digest().sections)
        assert "kn-slot-" not in r.html
    assert first.html == second.html


def test_fragments_are_spliced_whole_and_reused_across_digests(renderer: Renderer) -> None:
    fresh = Renderer()
    lone = fresh.render_digest(sample_digest(), now=NOW)
    # the module renderer has rendered other digests before: its cache holds other stories too
    renderer.render_digest(huge_digest(3, 5), now=NOW)
    again = renderer.render_digest(sample_digest(), now=NOW)
    assert again.html == lone.html and again.text == lone.text
    assert "kn-slot-" not in again.html
    # a placeholder-shaped string in feed text is escaped text, never replaced by a fragment
    forged = sample_digest()
    first = forged.sections[0]
    bait = f'<div id="kn-slot-{renderer._nonce}-0"></div>'
    forged = replace(
        forged, sections=(replace(first, entries=(replace(first.entries[0], title=bait),)), *forged.sections[1:])
    )
    html = renderer.render_digest(forged, now=NOW).html
    assert f'&lt;div id="kn-slot-{renderer._nonce}-0"&gt;&lt;/div&gt;' in html
    assert_html_safe(html)


def test_edited_macro_template_is_not_served_from_stale_fragments(tmp_path: Path) -> None:
    macros = (bundled_templates_dir() / "_macros.html.j2").read_text(encoding="utf-8")
    (tmp_path / "_macros.html.j2").write_text(macros.replace("{% macro entry(e) -%}", "{% macro entry(e) -%}OLD"))
    renderer = Renderer(tmp_path, reload_check_s=0)
    assert "OLD" in renderer.render_digest(sample_digest(), now=NOW).html
    target = tmp_path / "_macros.html.j2"
    target.write_text(macros.replace("{% macro entry(e) -%}", "{% macro entry(e) -%}NEW"))
    stat = target.stat()
    os.utime(target, (stat.st_atime + 5, stat.st_mtime + 5))  # even within the same mtime tick
    html = renderer.render_digest(sample_digest(), now=NOW).html
    assert "NEW" in html and "OLD" not in html


def test_threads_sharing_a_renderer_get_their_own_stories(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages hold placeholders into the shared fragment cache: concurrent renders must not mix them."""
    import sys
    import threading

    import daemon.mail.render as render_module

    monkeypatch.setattr(render_module, "FRAGMENT_CACHE", 6)  # trims often, while other pages render
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch constantly, as they can on a loaded machine

    digests = [replace(huge_digest(2 + n % 3, 2 + n % 4), tz=tz) for n, tz in enumerate(["UTC", "Asia/Tokyo"] * 4)]
    want = [Renderer().render_digest(d, now=NOW).html for d in digests]
    shared = Renderer()
    wrong: list[object] = []

    def work(offset: int) -> None:
        for k in range(40):
            i = (k + offset) % len(digests)
            try:
                if shared.render_digest(digests[i], now=NOW).html != want[i]:
                    wrong.append(i)
            except Exception as exc:  # a placeholder pointing past a trimmed cache
                wrong.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old_interval)
    assert not wrong
