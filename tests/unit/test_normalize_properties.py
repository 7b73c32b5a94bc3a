"""Properties of URL canonicalization and text normalization, over inputs nobody thought of.

Feed text is written by strangers: these functions must take anything, never raise, and reach a
fixed point, or one article gets two uids and a title can smuggle a line break into a header.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import parse_qsl, urlsplit

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from daemon.ingest.normalize import clean_title, html_to_text
from daemon.ingest.text import clean_text, is_hidden
from daemon.ingest.urls import canonical_url, is_tracking_param

settings.register_profile("keynews", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("keynews")

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
NASTY = st.sampled_from(
    [*BIDI, "\r", "\n", "\x00", "\x85", "\u2028", "\u2029", "\u200b", "\ufeff", "\U000e0041", "\ud800", "é"]
)
# Text with the characters that matter mixed into arbitrary Unicode.
TEXT = st.lists(st.one_of(st.characters(), NASTY, st.sampled_from([" ", "&#x202E;", "<b>", "&amp;"])), max_size=60).map(
    "".join
)

URL_PIECES = st.sampled_from([*"aZ09-._~:/?#[]@!$&'()*+,;=% \t\n", "é", "\u202e", "%zz", "%41", "ß", "İ"])


def url_text(max_size: int) -> st.SearchStrategy[str]:
    return st.lists(URL_PIECES, max_size=max_size).map("".join)


HOSTS = st.sampled_from(["Example.COM", "ex.com.", "xn--bcher-kva.example", "bücher.example", "[::1]", "127.0.0.1"])
PARAMS = st.lists(
    st.tuples(
        st.sampled_from(["utm_source", "UTM_Medium", "fbclid", "gclid", "id", "q", "page", "ref", "mc_eid", "_hsenc"]),
        url_text(8),
    ),
    max_size=6,
)


@st.composite
def urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "HTTPS", "https", "ftp", "javascript", ""]))
    userinfo = draw(st.sampled_from(["", "user@", "a:b@"]))
    port = draw(st.sampled_from(["", ":80", ":443", ":8080", ":0", ":99999", ":x"]))
    path = draw(url_text(20))
    query = "&".join(f"{k}={v}" for k, v in draw(PARAMS))
    fragment = draw(st.sampled_from(["", "#top", "#!/route", "#/a/b"]))
    return f"{scheme}://{userinfo}{draw(HOSTS)}{port}/{path}?{query}{fragment}"


ANY_URL = st.one_of(urls(), st.text(), url_text(40))


@given(ANY_URL)
@example("http://[::1/")
@example("https://ex.com/a #f")
@example("https://ex.com/%")
def test_canonical_url_is_total_and_idempotent(raw: str) -> None:
    once = canonical_url(raw)
    assert canonical_url(once) == once


@given(urls())
def test_canonical_url_is_one_printable_token_with_lower_case_scheme_and_host(raw: str) -> None:
    out = canonical_url(raw)
    if not out:
        return
    assert out.isascii() and out.isprintable() and " " not in out
    parts = urlsplit(out)
    assert parts.scheme in ("http", "https")
    assert parts.netloc == parts.netloc.lower() and "@" not in parts.netloc


@given(urls())
def test_tracking_parameters_never_survive(raw: str) -> None:
    out = canonical_url(raw)
    for key, value in parse_qsl(urlsplit(out).query, keep_blank_values=True):
        assert not is_tracking_param(key, value), (raw, out)


@given(urls())
def test_real_parameters_keep_their_values_and_order(raw: str) -> None:
    out = canonical_url(raw)
    if not out:
        return
    sent = parse_qsl(urlsplit(raw).query, keep_blank_values=True)
    kept = parse_qsl(urlsplit(out).query, keep_blank_values=True)
    assert kept == [(k, v) for k, v in sent if not is_tracking_param(k, v)]


@given(TEXT)
@example("a\u202eb\r\nc")
@example("\u2000\u0301")
def test_clean_text_is_idempotent_and_leaves_nothing_hidden(raw: str) -> None:
    once = clean_text(raw)
    assert clean_text(once) == once
    assert not any(is_hidden(c) for c in once)
    assert not any(c in once for c in BIDI + "\r\n\x85\u2028\u2029\t")
    assert once == once.strip() and "  " not in once
    assert unicodedata.is_normalized("NFC", once)
    once.encode("utf-8")  # no lone surrogates: the text can be stored and mailed


@given(TEXT)
def test_titles_and_summaries_from_html_are_one_clean_line(raw: str) -> None:
    for out in (clean_title(raw), html_to_text(raw)):
        assert not any(is_hidden(c) for c in out)
        assert "\r" not in out and "\n" not in out
        assert clean_text(out) == out  # already as clean as plain text gets


def test_every_hidden_code_point_is_removed() -> None:
    """The fast scan in clean_text is built from the Unicode database: check it covers all of it."""
    hidden = [chr(c) for c in range(0x110000) if is_hidden(chr(c))]
    assert len(hidden) > 2000  # C0/C1 controls, surrogates, every format character
    survivors = [c for c in hidden if clean_text(f"a{c}b") != "ab"]
    assert survivors == []
