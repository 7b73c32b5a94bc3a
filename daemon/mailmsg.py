"""Rendered content -> an RFC 5322 message with the list headers mailbox providers require.

Standard library `email` only, plus dkimpy for the optional signature. This module does not
import the renderer: it takes anything with subject/text/html, so deliver and render stay
independent stages.

Header decisions:
* every value passes `header_safe` (CR/LF and other controls gone) before it reaches a header,
  so feed text in a subject can never start a new header;
* the policy is SMTP (CRLF) with max_line_length 998: at the default 78 the email package
  RFC 2047-encodes a long unbreakable token such as the List-Unsubscribe URL, which breaks
  one-click unsubscribe in Gmail/Yahoo;
* `Precedence: bulk` is set: it is what most auto-responders (vacation, out-of-office) check to
  stay quiet, so digests do not bounce autoreplies back to the sending address; it has no
  effect on filtering by the large providers, which rely on List-Id / List-Unsubscribe instead.
  `Auto-Submitted` is not set: RFC 3834 reserves it for replies and automatic responses, and
  some clients treat it as a hint to hide the message.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Protocol

import dkim

POLICY = email_policy.SMTP.clone(max_line_length=998)

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


def make_message_id(domain: str, key: str) -> str:
    """Same key, same Message-ID: a retried send of one outbox row is recognisably the same mail."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    host = _DOMAIN_SAFE.sub("", header_safe(domain)).strip(".-") or "localhost"
    return f"<{digest}.keynews@{host}>"


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
    msg = EmailMessage(policy=POLICY)
    mid = header_safe(message_id).strip("<>")
    msg["Message-ID"] = f"<{mid}>"
    msg["Date"] = format_datetime(date if date.tzinfo else date.replace(tzinfo=UTC))
    msg["From"] = header_safe(from_)
    msg["To"] = header_safe(to)
    msg["Subject"] = header_safe(rendered.subject)
    msg["MIME-Version"] = "1.0"
    lid = header_safe(list_id).strip("<>")
    if lid:
        msg["List-Id"] = f"<{lid}>"
    targets = []
    url = header_safe(unsubscribe_url).strip("<>")
    if url:
        targets.append(f"<{url}>")
    mailto = header_safe(unsubscribe_mailto).strip("<>")
    if mailto:
        targets.append(f"<{mailto if mailto.lower().startswith('mailto:') else 'mailto:' + mailto}>")
    if targets:
        msg["List-Unsubscribe"] = ", ".join(targets)
    if url.lower().startswith("https://"):
        # RFC 8058: one-click POST only makes sense (and is only honoured) for an https URI.
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["Precedence"] = "bulk"
    for name, value in (extra_headers or {}).items():
        clean_name = re.sub(r"[^A-Za-z0-9-]", "", name)
        if clean_name and clean_name.lower() not in _RESERVED:
            msg[clean_name] = header_safe(value)
    # quoted-printable keeps the body 7-bit: no relay needs to convert it (which would break DKIM)
    msg.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg


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
