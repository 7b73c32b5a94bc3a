"""Message building: MIME shape, list headers, header injection, DKIM."""

from __future__ import annotations

import base64
import itertools
import re
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, timedelta, timezone
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import dkim
import pytest
from render_fixtures import NOW, huge_digest, sample_digest

from daemon.mail.message import (
    POLICY,
    as_bytes,
    build_message,
    build_message_bytes,
    dkim_sign,
    header_safe,
    make_message_id,
)
from daemon.mail.render import Rendered, Renderer

UNSUB = "https://keynews.example.com/unsubscribe/" + "Zm9vYmFy" * 20  # long, unbreakable


def build(rendered: Rendered, **kw: object) -> EmailMessage:
    args: dict[str, object] = {
        "to": "ann@example.com",
        "from_": "keynews <keynews@example.com>",
        "message_id": make_message_id("example.com", "outbox:1"),
        "date": NOW,
        "list_id": "keynews.example.com",
        "unsubscribe_url": UNSUB,
        "unsubscribe_mailto": "unsubscribe@example.com",
    }
    args.update(kw)
    return build_message(rendered, **args)  # type: ignore[arg-type]


def reparse(msg: EmailMessage) -> EmailMessage:
    parsed = message_from_bytes(as_bytes(msg), policy=email_policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    return Renderer().render_digest(sample_digest(), now=NOW)


def test_multipart_alternative_text_then_html(rendered: Rendered) -> None:
    msg = reparse(build(rendered))
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content().replace("\r\n", "\n") == rendered.text
    assert parts[1].get_content().replace("\r\n", "\n") == rendered.html
    assert parts[0]["Content-Transfer-Encoding"] == "quoted-printable"
    # the renderer writes ASCII HTML with short lines, so it goes without a transfer encoding
    assert parts[1]["Content-Transfer-Encoding"] == "7bit"


def test_html_part_falls_back_to_quoted_printable() -> None:
    """Non-ASCII or a line over 998 octets (an operator template, a huge URL) cannot go as 7bit."""
    for html in ("<p>caf\u00e9</p>\n", "<p>" + "x" * 1200 + "</p>\n"):
        msg = reparse(build(Rendered(subject="s", text="t\n", html=html)))
        part = list(msg.iter_parts())[1]
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
        assert part.get_content().replace("\r\n", "\n") == html


def test_headers(rendered: Rendered) -> None:
    raw = as_bytes(build(rendered))
    msg = message_from_bytes(raw, policy=email_policy.default)
    assert msg["Message-ID"] == make_message_id("example.com", "outbox:1")
    assert msg["Date"] == "Tue, 04 Mar 2025 22:00:00 +0000"
    assert msg["From"] == "keynews <keynews@example.com>"
    assert msg["To"] == "ann@example.com"
    assert msg["Subject"] == rendered.subject
    assert msg["MIME-Version"] == "1.0"
    assert msg["List-Id"] == "<keynews.example.com>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Precedence"] == "bulk"
    # the URL goes out verbatim on the wire: not RFC 2047-encoded, not split
    assert f"List-Unsubscribe: <{UNSUB}>, <mailto:unsubscribe@example.com>\r\n".encode() in raw
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")


def test_no_mailto_and_plain_http(rendered: Rendered) -> None:
    msg = reparse(build(rendered, unsubscribe_mailto="", unsubscribe_url="http://127.0.0.1:8025/u/t"))
    assert msg["List-Unsubscribe"] == "<http://127.0.0.1:8025/u/t>"
    assert msg["List-Unsubscribe-Post"] is None  # RFC 8058 requires https


def test_crlf_in_feed_title_never_makes_a_header() -> None:
    digest = replace(sample_digest(), subject="AAPL: results\r\nBcc: victim@example.com\r\n\r\n<b>body</b>")
    rendered = Renderer().render_digest(digest, now=NOW)
    raw = as_bytes(
        build(
            rendered,
            to="ann@example.com\r\nCc: other@example.com",
            extra_headers={"X-Keynews-Window": "w\nBcc: x@example.com", "Bcc": "sneaky@example.com"},
        )
    )
    msg = message_from_bytes(raw, policy=email_policy.default)
    assert msg["Bcc"] is None and msg["Cc"] is None
    assert msg["Subject"] == "AAPL: results Bcc: victim@example.com <b>body</b>"
    assert msg["X-Keynews-Window"] == "w Bcc: x@example.com"
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert not any(line.lower().startswith((b"bcc:", b"cc:")) for line in head.split(b"\r\n"))


def test_unicode_subject_is_encoded_and_round_trips() -> None:
    digest = replace(sample_digest(), subject="Nestlé — résultats annuels ✓")
    rendered = Renderer().render_digest(digest, now=NOW)
    raw = as_bytes(build(rendered))
    assert "Nestlé".encode() not in raw.split(b"\r\n\r\n", 1)[0]
    assert message_from_bytes(raw, policy=email_policy.default)["Subject"] == "Nestlé — résultats annuels ✓"


def test_header_safe() -> None:
    assert header_safe("a\r\nb\rc\nd\x00e\u2028f") == "a b c d e f"
    assert header_safe("  spaced   out  ") == "spaced out"


def test_message_id_deterministic() -> None:
    a = make_message_id("example.com", "outbox:42")
    assert a == make_message_id("example.com", "outbox:42")
    assert a != make_message_id("example.com", "outbox:43")
    assert a.startswith("<") and a.endswith("@example.com>")
    assert make_message_id("exa mple.com\r\n>", "k").endswith("@example.com>")


def test_huge_digest_message_under_cap() -> None:
    rendered = Renderer().render_digest(huge_digest(10, 60), now=NOW)
    msg = reparse(build(rendered))
    html = list(msg.iter_parts())[1].get_content()
    assert len(html.encode()) < 90 * 1024


@pytest.fixture(scope="module")
def dkim_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    d: Path = tmp_path_factory.mktemp("dkim")
    subprocess.run(["openssl", "genrsa", "-out", str(d / "k.pem"), "2048"], check=True, capture_output=True)
    subprocess.run(
        ["openssl", "rsa", "-in", str(d / "k.pem"), "-pubout", "-outform", "DER", "-out", str(d / "k.der")],
        check=True,
        capture_output=True,
    )
    return (d / "k.pem").read_bytes(), base64.b64encode((d / "k.der").read_bytes())


def test_dkim_sign_verifies_and_covers_list_headers(rendered: Rendered, dkim_keys: tuple[bytes, bytes]) -> None:
    private, public_b64 = dkim_keys

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"sel1._domainkey.example.com."
        return b"v=DKIM1; k=rsa; p=" + public_b64

    signed = dkim_sign(as_bytes(build(rendered)), selector="sel1", domain="example.com", private_key_pem=private)
    assert signed.startswith(b"DKIM-Signature:")
    assert dkim.verify(signed, dnsfunc=dnsfunc)
    sig = message_from_bytes(signed, policy=email_policy.default)["DKIM-Signature"]
    h = "".join(sig.split("h=", 1)[1].split(";", 1)[0].split()).lower()
    for name in ("from", "to", "subject", "date", "message-id", "list-id", "list-unsubscribe", "list-unsubscribe-post"):
        assert name in h.split(":"), name
    # tampering with a list header breaks the signature
    tampered = signed.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: nope")
    assert tampered != signed
    assert not dkim.verify(tampered, dnsfunc=dnsfunc)


# --------------------------------------------------------------------------- fast path vs stdlib


def stdlib_message(rendered: Any, **kw: Any) -> bytes:
    """How build_message made its bytes before the fast path: the reference it must parse like."""
    msg = EmailMessage(policy=POLICY)
    msg["Message-ID"] = f"<{header_safe(kw['message_id']).strip('<>')}>"
    date = kw["date"]
    msg["Date"] = format_datetime(date if date.tzinfo else date.replace(tzinfo=UTC))
    msg["From"] = header_safe(kw["from_"])
    msg["To"] = header_safe(kw["to"])
    msg["Subject"] = header_safe(rendered.subject)
    msg["MIME-Version"] = "1.0"
    lid = header_safe(kw["list_id"]).strip("<>")
    if lid:
        msg["List-Id"] = f"<{lid}>"
    targets = []
    url = header_safe(kw["unsubscribe_url"]).strip("<>")
    if url:
        targets.append(f"<{url}>")
    mailto = header_safe(kw.get("unsubscribe_mailto", "")).strip("<>")
    if mailto:
        targets.append(f"<{mailto if mailto.lower().startswith('mailto:') else 'mailto:' + mailto}>")
    if targets:
        msg["List-Unsubscribe"] = ", ".join(targets)
    if url.lower().startswith("https://"):
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["Precedence"] = "bulk"
    for name, value in (kw.get("extra_headers") or {}).items():
        clean = re.sub(r"[^A-Za-z0-9-]", "", name)
        if clean and clean.lower() not in {"bcc", "cc", "to", "from", "subject", "message-id", "date"}:
            msg[clean] = header_safe(value)
    msg.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg.as_bytes(policy=POLICY)


def parsed_view(raw: bytes) -> tuple[list[tuple[str, str]], list[tuple[str, str | None, str]]]:
    """Headers (boundary aside) and decoded parts, as a reader of the message sees them."""
    msg = message_from_bytes(raw, policy=email_policy.default)
    assert isinstance(msg, EmailMessage)
    headers = [(k, re.sub(r'boundary="[^"]*"', "boundary", str(v))) for k, v in msg.items()]
    parts = [(p.get_content_type(), p.get_content_charset(), p.get_content()) for p in msg.iter_parts()]
    assert not msg.defects and not any(p.defects for p in msg.iter_parts())
    return headers, parts


SUBJECTS = [
    "keynews: AAPL results · MSFT 8-K 5.02",
    "plain ascii",
    "Nestlé — résultats annuels ✓ " * 12,
    "AAPL: results\r\nBcc: victim@example.com\r\n\r\n<b>body</b>",
    "x" * 1200,
    "word " * 300,
    "a" * 70 + "é" * 40,
    "\u202eRTL\u200b zero width, emoji 📈 and tab\tin",
    "",
    "  leading and trailing  ",
]
RECIPIENTS = [
    "ann@example.com",
    "Ann Smith <ann@example.com>",
    '"Smith, Ann" <ann@example.com>',
    "Zoë <zoe@example.com>",
    "ann.o'neil+tag@sub.example.co.uk",
    "ann@example.com\r\nCc: other@example.com",
]
BODIES = [
    "line\n",
    "a\r\nb\rc\n\n  trailing  \n\t\n.\nFrom me\n" + "x" * 1200 + "\né ü ✓ =3D =_kn_\n",
    "",
    "no final newline",
    '--=_kn_0123\n<p style="color:#1f2328">Caf&eacute;</p>\n',
]
URLS = ["https://keynews.example.com/unsubscribe/" + "Zm9vYmFy" * 20, "http://127.0.0.1:8025/u/t",
        "https://keynews.example.com/u/" + "A" * 900, ""]  # fmt: skip


@pytest.mark.parametrize(("subject", "to"), list(itertools.product(SUBJECTS, RECIPIENTS)))
def test_fast_bytes_parse_like_the_stdlib(subject: str, to: str) -> None:
    for i, (text, url) in enumerate(itertools.product(BODIES, URLS)):
        rendered = Rendered(subject=subject, text=text, html="<p>" + BODIES[-1 - i % len(BODIES)] + "</p>")
        kw: dict[str, Any] = {
            "to": to,
            "from_": "keynews <keynews@example.com>" if i % 2 else "Kéy Nëws <keynews@example.com>",
            "message_id": make_message_id("example.com", f"outbox:{i}"),
            "date": NOW + timedelta(minutes=i) if i % 3 else NOW.astimezone(timezone(timedelta(hours=-5))),
            "list_id": "keynews.example.com",
            "unsubscribe_url": url,
            "unsubscribe_mailto": "unsubscribe@example.com" if i % 2 else "",
            "extra_headers": {"X-Keynews-Window": subject, "Bcc": "sneaky@example.com"},
        }
        new = build_message_bytes(rendered, **kw)
        assert parsed_view(new) == parsed_view(stdlib_message(rendered, **kw)), (subject, to, text, url)
        lines = new.split(b"\r\n")
        assert new.endswith(b"\r\n") and b"\n" not in new.replace(b"\r\n", b"")
        assert all(len(line) <= 998 for line in lines)
        assert new.isascii()
        head = new.split(b"\r\n\r\n", 1)[0]
        assert not any(line.lower().startswith((b"bcc:", b"cc:")) for line in head.split(b"\r\n"))
        if url:  # the URL goes out verbatim: neither split nor encoded
            assert f"<{url}>".encode() in head


def simple_kw() -> dict[str, Any]:
    return {
        "to": "ann@example.com",
        "from_": "keynews <k@example.com>",
        "message_id": "<a.keynews@example.com>",
        "date": NOW,
        "list_id": "l.example.com",
        "unsubscribe_url": UNSUB,
    }


def test_build_message_is_the_parsed_bytes(rendered: Rendered) -> None:
    kw = simple_kw()
    assert as_bytes(build_message(rendered, **kw)) == build_message_bytes(rendered, **kw)
    assert build_message_bytes(rendered, **kw) == build_message_bytes(rendered, **kw)  # deterministic


@pytest.mark.parametrize(
    "smuggled",
    [
        "=?utf-8?b?DQpCY2M6IHZpY3RpbUBleGFtcGxlLmNvbQ==?=",  # CR LF "Bcc: victim@example.com"
        "results =?utf-8?q?=0D=0ABcc:_victim@example.com?= · more",
        "=?iso-8859-1?q?caf=E9?=",
    ],
)
def test_encoded_words_in_feed_text_stay_literal(smuggled: str) -> None:
    """The stdlib decodes RFC 2047 words it finds in a value it is given, and then writes the decoded
    CR LF out as a new header line; the fast path encodes the literal text instead."""
    raw = build_message_bytes(
        Rendered(subject=smuggled, text="t\n", html="<p>h</p>\n"),
        to="ann@example.com",
        from_="keynews <k@example.com>",
        message_id="<a.keynews@example.com>",
        date=NOW,
        list_id=f"list {smuggled}",
        unsubscribe_url="https://example.com/u/=?x?=",
        extra_headers={"X-Keynews-Window": smuggled},
    )
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert not any(line.lower().startswith(b"bcc:") for line in head.split(b"\r\n"))
    msg = message_from_bytes(raw, policy=email_policy.default)
    assert msg["Subject"] == smuggled
    assert msg["X-Keynews-Window"] == smuggled
    assert msg["List-Id"] == f"<list {smuggled}>"
    assert msg["Bcc"] is None
    assert b"List-Unsubscribe: <https://example.com/u/=?x?=>\r\n" in head


def test_boundary_never_in_a_body() -> None:
    kw = simple_kw()
    first = build_message_bytes(Rendered(subject="s", text="t\n", html="<p>h</p>\n"), **kw)
    boundary = re.search(rb'boundary="([^"]+)"', first)
    assert boundary is not None
    trap = "<p>--" + boundary.group(1).decode() + "--</p>\n"
    raw = build_message_bytes(Rendered(subject="s", text="t\n", html=trap), **kw)
    msg = message_from_bytes(raw, policy=email_policy.default)
    assert [p.get_content().replace("\r\n", "\n") for p in msg.iter_parts()] == ["t\n", trap]
