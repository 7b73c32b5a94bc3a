"""Message building: MIME shape, list headers, header injection, DKIM."""

from __future__ import annotations

import base64
import shutil
import subprocess
from dataclasses import replace
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from pathlib import Path

import dkim
import pytest
from render_fixtures import NOW, huge_digest, sample_digest

from daemon.mailmsg import as_bytes, build_message, dkim_sign, header_safe, make_message_id
from daemon.render import Rendered, Renderer

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
    assert all(p["Content-Transfer-Encoding"] == "quoted-printable" for p in parts)


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
