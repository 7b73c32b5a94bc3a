"""Rendered content -> an RFC 5322 message with the list headers mailbox providers require.

Standard library plus dkimpy for the optional signature. This module does not import the
renderer: it takes anything with subject/text/html, so deliver and render stay independent stages.

The wire bytes are written directly (`build_message_bytes`): the stdlib `email` package spends
~7 ms per 35 KiB digest on its header registry, folding and pure-Python quoted-printable, more
than rendering the digest. The output is what the stdlib would produce once parsed (same header
values, same part contents; tests/unit/test_mailmsg.py compares the two over hostile input), and
anything the fast path does not handle itself (non-ASCII addresses, values that look like
RFC 2047 words, over-long lines) is folded by the stdlib policy as before.

Header decisions:
* every value passes `header_safe` (CR/LF and other controls gone) before it reaches a header,
  so feed text in a subject can never start a new header;
* lines may reach 998 octets (RFC 5322's hard limit): at the stdlib default of 78 a long
  unbreakable token such as the List-Unsubscribe URL gets RFC 2047-encoded, which breaks
  one-click unsubscribe in Gmail/Yahoo; List-Unsubscribe folds only between its two targets;
* `Precedence: bulk` is set: it is what most auto-responders (vacation, out-of-office) check to
  stay quiet, so digests do not bounce autoreplies back to the sending address; it has no
  effect on filtering by the large providers, which rely on List-Id / List-Unsubscribe instead.
  `Auto-Submitted` is not set: RFC 3834 reserves it for replies and automatic responses, and
  some clients treat it as a hint to hide the message.

Body decisions: the text part is quoted-printable (7-bit, so no relay converts it and breaks
DKIM); the HTML part goes as 7bit when it is pure ASCII with lines of at most 998 octets (the
renderer writes non-ASCII as character references and keeps lines short, and HTML is full of
`=`, which quoted-printable triples), else quoted-printable.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Protocol, cast

import dkim

POLICY = email_policy.SMTP.clone(max_line_length=998)
MAX_LINE = 998  # octets per line, CRLF excluded (RFC 5322 2.1.1)
EW_MAX = 75  # characters per RFC 2047 encoded word

SIGNED_HEADERS: tuple[str, ...] = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)

_CONTROLS = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]+")
_DOMAIN_SAFE = re.compile(r"[^A-Za-z0-9.-]+")
_HEADER_NAME = re.compile(r"[^A-Za-z0-9-]")
_RESERVED = {
    "message-id",
    "date",
    "from",
    "to",
    "subject",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "bcc",
    "cc",
}
# Values the fast path writes verbatim: printable ASCII, and no "=?" (which the stdlib would try
# to read as an RFC 2047 word). Anything else goes through the stdlib policy.
_PLAIN = re.compile(r"[\x20-\x7e]*")
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATEXT}(?:\.{_ATEXT})*"
_DOMAIN = r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_ADDRESS = re.compile(rf"(?:{_ATEXT}(?: {_ATEXT})* <{_DOT_ATOM}@{_DOMAIN}>|{_DOT_ATOM}@{_DOMAIN})")
_MESSAGE_ID = re.compile(rf"<{_DOT_ATOM}@{_DOMAIN}>")
# RFC 2047 'Q': these go as themselves, space as "_", everything else as =XX.
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")


class RenderedLike(Protocol):
    @property
    def subject(self) -> str: ...

    @property
    def text(self) -> str: ...

    @property
    def html(self) -> str: ...


def header_safe(value: str) -> str:
    """A single-line header value: control characters (CR, LF, NUL, ...) become spaces."""
    return " ".join(_CONTROLS.sub(" ", value or "").split())


def sender_domain(mail_from: str) -> str:
    """The domain of the From address ("keynews <news@example.com>" -> example.com), for Message-IDs."""
    return mail_from.rsplit("@", 1)[-1].strip(">").strip() or "localhost"


def make_message_id(domain: str, key: str) -> str:
    """Same key, same Message-ID: a retried send of one outbox row is recognisably the same mail."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    host = _DOMAIN_SAFE.sub("", header_safe(domain)).strip(".-") or "localhost"
    return f"<{digest}.keynews@{host}>"


# --------------------------------------------------------------------------- headers


@functools.lru_cache(maxsize=512)
def _stdlib_header(name: str, value: str) -> bytes:
    """The header as the stdlib folds it (cached: From, List-Id and such repeat across mails).

    Checked to still be one header: the stdlib decodes RFC 2047 words it finds in a value, so
    "=?utf-8?b?DQpCY2M6IHg=?=" would come out as CR LF "Bcc: x". The callers never hand it a
    value with "=?" in an unstructured header; for addresses the check is what stops it.
    """
    folded = POLICY.header_factory(name, value).fold(policy=POLICY).encode("ascii", "surrogateescape")
    lines = folded.split(b"\r\n")
    if (
        lines[-1]
        or any(b"\r" in ln or b"\n" in ln for ln in lines)
        or any(ln[:1] not in (b" ", b"\t") for ln in lines[1:-1])
    ):
        raise ValueError(f"{name} header value would not stay one header: {value!r}")
    return folded


def _plain(value: str) -> bool:
    return _PLAIN.fullmatch(value) is not None and "=?" not in value


def _header(name: str, value: str) -> bytes:
    """An unstructured header: verbatim when plain and short, else folded or RFC 2047-encoded.

    A value that is not ASCII, or that carries "=?" (which a reader would decode as an RFC 2047
    word: feed text must show as written), is sent as encoded words of the literal text.
    """
    if _plain(value):
        if len(name) + 2 + len(value) <= MAX_LINE:
            return f"{name}: {value}\r\n".encode("ascii")
        return _stdlib_header(name, value)  # folded at spaces, as before
    return _encoded_words(name, value)


_Q_TABLE = {b: chr(b) if b in _Q_SAFE else "_" if b == 0x20 else f"={b:02X}" for b in range(256)}


def _q_word(data: bytes) -> str:
    return data.decode("latin-1").translate(_Q_TABLE)


@functools.lru_cache(maxsize=4096)
def _char_cost(ch: str) -> tuple[int, int]:
    """(length in Q encoding, UTF-8 bytes) of one character."""
    raw = ch.encode("utf-8", "surrogatepass")
    return len(_q_word(raw)), len(raw)


def _encoded_words(name: str, value: str) -> bytes:
    """RFC 2047 words, one per line, each line at most 76 characters, never splitting a character.

    A reader drops the folding whitespace between adjacent encoded words, so the decoded value is
    exactly `value`. Each word is Q or B, whichever is shorter (Q keeps mostly-ASCII subjects
    legible in the raw source).
    """
    budget = max(min(EW_MAX, 76 - len(name) - 2), 40) - len("=?utf-8?q??=")
    words: list[str] = []
    start = q_len = b_bytes = 0
    for i, ch in enumerate(value):
        cq, size = _char_cost(ch)
        if i > start and min(q_len + cq, -(-(b_bytes + size) // 3) * 4) > budget:
            words.append(_ew(value[start:i]))
            start, q_len, b_bytes = i, 0, 0
        q_len += cq
        b_bytes += size
    if start < len(value):
        words.append(_ew(value[start:]))
    return (f"{name}: " + "\r\n ".join(words) + "\r\n").encode("ascii")


def _ew(text: str) -> str:
    data = text.encode("utf-8")
    q = _q_word(data)
    b = binascii.b2a_base64(data, newline=False).decode("ascii")
    return f"=?utf-8?q?{q}?=" if len(q) <= len(b) else f"=?utf-8?b?{b}?="


def _address(name: str, value: str) -> bytes:
    if len(value) < MAX_LINE - 100 and _ADDRESS.fullmatch(value) and "=?" not in value:
        return f"{name}: {value}\r\n".encode("ascii")
    return _stdlib_header(name, value)


def _list_unsubscribe(targets: list[str]) -> bytes:
    """Both targets on one line when they fit, else one per line: a URL is never split or encoded."""
    if all(_PLAIN.fullmatch(t) for t in targets):
        line = "List-Unsubscribe: " + ", ".join(targets)
        if len(line) <= MAX_LINE:
            return (line + "\r\n").encode("ascii")
        folded = "List-Unsubscribe: " + ",\r\n ".join(targets)
        if all(len(part) <= MAX_LINE for part in folded.split("\r\n")):
            return (folded + "\r\n").encode("ascii")
    # non-ASCII, or a target over 998 octets, cannot go out as is: RFC 2047 words, as the stdlib did
    return _encoded_words("List-Unsubscribe", ", ".join(targets))


def _headers(
    rendered: RenderedLike,
    *,
    to: str,
    from_: str,
    message_id: str,
    date: datetime,
    list_id: str,
    unsubscribe_url: str,
    unsubscribe_mailto: str,
    extra_headers: Mapping[str, str] | None,
) -> list[bytes]:
    out: list[bytes] = []
    mid = f"<{header_safe(message_id).strip('<>')}>"
    out.append(
        f"Message-ID: {mid}\r\n".encode("ascii") if _MESSAGE_ID.fullmatch(mid) else _stdlib_header("Message-ID", mid)
    )
    out.append(_header("Date", format_datetime(date if date.tzinfo else date.replace(tzinfo=UTC))))
    out.append(_address("From", header_safe(from_)))
    out.append(_address("To", header_safe(to)))
    out.append(_header("Subject", header_safe(rendered.subject)))
    out.append(b"MIME-Version: 1.0\r\n")
    lid = header_safe(list_id).strip("<>")
    if lid:
        out.append(_header("List-Id", f"<{lid}>"))
    targets = []
    url = header_safe(unsubscribe_url).strip("<>")
    if url:
        targets.append(f"<{url}>")
    mailto = header_safe(unsubscribe_mailto).strip("<>")
    if mailto:
        targets.append(f"<{mailto if mailto.lower().startswith('mailto:') else 'mailto:' + mailto}>")
    if targets:
        out.append(_list_unsubscribe(targets))
    if url.lower().startswith("https://"):
        # RFC 8058: one-click POST only makes sense (and is only honoured) for an https URI.
        out.append(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    out.append(b"Precedence: bulk\r\n")
    for name, value in (extra_headers or {}).items():
        clean_name = _HEADER_NAME.sub("", name)
        if clean_name and clean_name.lower() not in _RESERVED:
            out.append(_header(clean_name, header_safe(value)))
    return out


# --------------------------------------------------------------------------- bodies


def _crlf_body(text: str) -> bytes:
    """UTF-8 with CRLF line ends and a final CRLF: the body the stdlib content manager stores."""
    return b"\r\n".join(text.encode("utf-8").splitlines()) + b"\r\n"


def _body(text: str, *, allow_7bit: bool) -> tuple[str, bytes]:
    """(Content-Transfer-Encoding, encoded body). 7bit only for ASCII with every line <= 998."""
    data = _crlf_body(text)
    if allow_7bit and data.isascii() and max(map(len, data.split(b"\r\n"))) <= MAX_LINE:
        return "7bit", data
    # C quoted-printable: soft line breaks at 76, CRLF kept as line breaks (the input's first
    # line end is CRLF, which is what b2a_qp uses for its own breaks)
    return "quoted-printable", binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)


def _boundary(seed: str, bodies: tuple[bytes, ...]) -> str:
    """Deterministic (same message, same bytes) and absent from every body.

    It starts with "=_", which quoted-printable never produces; the check covers 7bit bodies.
    """
    base = "=_kn_" + hashlib.sha256(seed.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    boundary, n = base, 0
    while any(b"--" + boundary.encode("ascii") in body for body in bodies):
        n += 1
        boundary = f"{base}_{n}"
    return boundary


def build_message_bytes(
    rendered: RenderedLike,
    *,
    to: str,
    from_: str,
    message_id: str,
    date: datetime,
    list_id: str,
    unsubscribe_url: str,
    unsubscribe_mailto: str = "",
    extra_headers: Mapping[str, str] | None = None,
    html_7bit: bool = True,
) -> bytes:
    """The wire form (CRLF) of a multipart/alternative digest: text part, then HTML part."""
    head = _headers(
        rendered,
        to=to,
        from_=from_,
        message_id=message_id,
        date=date,
        list_id=list_id,
        unsubscribe_url=unsubscribe_url,
        unsubscribe_mailto=unsubscribe_mailto,
        extra_headers=extra_headers,
    )
    text_cte, text = _body(rendered.text, allow_7bit=False)
    html_cte, html = _body(rendered.html, allow_7bit=html_7bit)
    boundary = _boundary(message_id, (text, html))
    b = boundary.encode("ascii")
    head.append(b'Content-Type: multipart/alternative; boundary="' + b + b'"\r\n')
    return b"".join(
        (
            *head,
            b"\r\n--",
            b,
            b'\r\nContent-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: ',
            text_cte.encode("ascii"),
            b"\r\n\r\n",
            text,
            b"\r\n--",
            b,
            b'\r\nContent-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: ',
            html_cte.encode("ascii"),
            b"\r\n\r\n",
            html,
            b"\r\n--",
            b,
            b"--\r\n",
        )
    )


def build_message(
    rendered: RenderedLike,
    *,
    to: str,
    from_: str,
    message_id: str,
    date: datetime,
    list_id: str,
    unsubscribe_url: str,
    unsubscribe_mailto: str = "",
    extra_headers: Mapping[str, str] | None = None,
) -> EmailMessage:
    """The same message as an EmailMessage, for callers that inspect or amend it before sending.

    Parsed from `build_message_bytes`, so both forms carry the same headers and parts; the send
    path should use the bytes directly (parsing costs about as much as building).
    """
    raw = build_message_bytes(
        rendered,
        to=to,
        from_=from_,
        message_id=message_id,
        date=date,
        list_id=list_id,
        unsubscribe_url=unsubscribe_url,
        unsubscribe_mailto=unsubscribe_mailto,
        extra_headers=extra_headers,
    )
    return cast(EmailMessage, message_from_bytes(raw, policy=POLICY))


def as_bytes(msg: EmailMessage) -> bytes:
    return msg.as_bytes(policy=POLICY)


def dkim_sign(
    raw: bytes,
    *,
    selector: str,
    domain: str,
    private_key_pem: bytes | str,
    headers: tuple[str, ...] = SIGNED_HEADERS,
) -> bytes:
    """Prepend a DKIM-Signature (rsa-sha256, relaxed/relaxed) covering the list headers too."""
    key = private_key_pem.encode("ascii") if isinstance(private_key_pem, str) else private_key_pem
    signature = dkim.sign(
        raw,
        selector.encode("ascii"),
        domain.encode("ascii"),
        key,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[h.encode("ascii") for h in headers],
    )
    return bytes(signature) + raw
