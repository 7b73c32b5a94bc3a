"""Transports that put finished messages on the wire (or on disk). The only home of smtplib.

Every failure is a DeliveryError whose `permanent` flag drives the outbox: permanent means the
receiving side refused this message or recipient (5xx to MAIL/RCPT/DATA) and a retry cannot
help; everything else (4xx, refused/reset connections, timeouts, TLS trouble, bad credentials,
which the operator can fix) is temporary and the row is retried with back-off.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mailbox
import os
import re
import smtplib
import ssl as ssl_lib
import tempfile
import threading
from email import policy as email_policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Protocol

from daemon.config import Settings
from daemon.errors import DeliveryError

log = logging.getLogger(__name__)

_WIRE_POLICY = email_policy.SMTP.clone(max_line_length=998)
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._@+-]+")


class Transport(Protocol):
    def send(self, msg: EmailMessage | bytes, *, sender: str, recipients: list[str]) -> None: ...

    def close(self) -> None: ...


def _raw(msg: EmailMessage | bytes) -> bytes:
    if isinstance(msg, bytes | bytearray):
        return bytes(msg)
    return msg.as_bytes(policy=_WIRE_POLICY)


def message_file_stem(raw: bytes) -> str:
    """A file name from the Message-ID, so re-sending the same message overwrites, not doubles."""
    headers = BytesHeaderParser(policy=email_policy.compat32).parsebytes(raw)
    mid = str(headers.get("Message-ID", "") or "").strip().strip("<>")
    stem = _UNSAFE_NAME.sub("_", mid).strip("._")[:180]
    return stem or hashlib.sha256(raw).hexdigest()[:40]


# 5xx answers that mean "fix your TLS/credentials", not "this message is unwanted": retrying
# after the operator fixes the setup will work, so they must not fail the message for good.
_SETUP_CODES = frozenset({530, 534, 535, 538})


def _is_permanent(code: int | None) -> bool:
    return code is not None and 500 <= code < 600 and code not in _SETUP_CODES


def _decode(resp: bytes | str) -> str:
    return resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)


class SmtpTransport:
    """One SMTP session reused for many messages; connects lazily, reconnects once if dropped."""

    def __init__(
        self,
        host: str,
        port: int = 0,
        *,
        user: str = "",
        password: str = "",
        starttls: bool = False,
        ssl: bool = False,
        timeout: float = 30.0,
        local_hostname: str | None = None,
        tls_context: ssl_lib.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port or (465 if ssl else 587 if starttls else 25)
        self.user = user
        self.password = password
        self.starttls = starttls
        self.use_ssl = ssl
        self.timeout = timeout
        self.local_hostname = local_hostname
        self.tls_context = tls_context
        self.connections = 0  # sessions opened so far; exposed for metrics and tests
        self._smtp: smtplib.SMTP | None = None
        self._lock = threading.Lock()

    # -- connection -------------------------------------------------------------------------

    def _context(self) -> ssl_lib.SSLContext:
        return self.tls_context or ssl_lib.create_default_context()

    def _connect(self) -> smtplib.SMTP:
        where = f"{self.host}:{self.port}"
        smtp: smtplib.SMTP | None = None
        try:
            if self.use_ssl:
                smtp = smtplib.SMTP_SSL(
                    self.host,
                    self.port,
                    local_hostname=self.local_hostname,
                    timeout=self.timeout,
                    context=self._context(),
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout)
            smtp.ehlo()
            if self.starttls and not self.use_ssl:
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if self.user:
                smtp.login(self.user, self.password)
        except smtplib.SMTPAuthenticationError as exc:
            self._abandon(smtp)
            raise DeliveryError(f"SMTP login to {where} failed: {exc.smtp_code} {_decode(exc.smtp_error)}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            # OSError covers refused/reset/timeouts and ssl.SSLError; a 5xx greeting or missing
            # STARTTLS is a server/config problem, not this message's: temporary as well.
            self._abandon(smtp)
            raise DeliveryError(f"SMTP connect to {where} failed: {exc!r}") from exc
        self.connections += 1
        return smtp

    @staticmethod
    def _abandon(smtp: smtplib.SMTP | None) -> None:
        if smtp is not None:
            with contextlib.suppress(Exception):
                smtp.close()

    def close(self) -> None:
        with self._lock:
            smtp, self._smtp = self._smtp, None
            if smtp is not None:
                try:
                    smtp.quit()
                except (smtplib.SMTPException, OSError):
                    self._abandon(smtp)

    # -- sending ----------------------------------------------------------------------------

    def send(self, msg: EmailMessage | bytes, *, sender: str, recipients: list[str]) -> None:
        raw = _raw(msg)
        with self._lock:
            fresh = self._smtp is None
            if self._smtp is None:
                self._smtp = self._connect()
            try:
                self._sendmail(self._smtp, raw, sender, recipients)
            except smtplib.SMTPServerDisconnected as exc:
                # An idle reused session may have been closed by the server: one new session.
                self._abandon(self._smtp)
                self._smtp = None
                if fresh:
                    raise DeliveryError(f"SMTP server disconnected: {exc}") from exc
                self._smtp = self._connect()
                try:
                    self._sendmail(self._smtp, raw, sender, recipients)
                except smtplib.SMTPServerDisconnected as again:
                    self._abandon(self._smtp)
                    self._smtp = None
                    raise DeliveryError(f"SMTP server disconnected: {again}") from again

    def _sendmail(self, smtp: smtplib.SMTP, raw: bytes, sender: str, recipients: list[str]) -> None:
        try:
            refused = smtp.sendmail(sender, recipients, raw)
        except smtplib.SMTPServerDisconnected:
            raise
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            detail = "; ".join(f"{rcpt}: {code} {_decode(resp)}" for rcpt, (code, resp) in exc.recipients.items())
            raise DeliveryError(
                f"recipients refused: {detail}", permanent=bool(codes) and all(_is_permanent(c) for c in codes)
            ) from exc
        except smtplib.SMTPResponseException as exc:
            # SMTPSenderRefused, SMTPDataError: the server's answer to this message.
            permanent = _is_permanent(exc.smtp_code)
            raise DeliveryError(f"SMTP {exc.smtp_code} {_decode(exc.smtp_error)}", permanent=permanent) from exc
        except (smtplib.SMTPException, OSError) as exc:
            # timeouts and resets mid-transaction: the session is unusable now
            self._abandon(smtp)
            self._smtp = None
            raise DeliveryError(f"SMTP send failed: {exc!r}") from exc
        if refused:
            # Accepted for some recipients: retrying would duplicate for those, so log, don't raise.
            log.warning("SMTP refused some recipients: %s", refused)


class FileTransport:
    """One .eml file per message, written atomically; the same Message-ID overwrites."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def send(self, msg: EmailMessage | bytes, *, sender: str, recipients: list[str]) -> None:
        raw = _raw(msg)
        target = self.directory / f"{message_file_stem(raw)}.eml"
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".eml")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(raw)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise DeliveryError(f"cannot write {target}: {exc}") from exc

    def close(self) -> None:
        return None


class MaildirTransport:
    """Delivery into a Maildir (new/); a message whose Message-ID is already there is not added twice."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.box = mailbox.Maildir(str(self.directory), create=True)

    def send(self, msg: EmailMessage | bytes, *, sender: str, recipients: list[str]) -> None:
        raw = _raw(msg)
        stem = message_file_stem(raw)
        try:
            for sub in ("new", "cur"):
                for existing in (self.directory / sub).glob(f"{stem}*"):
                    if existing.name == stem or existing.name.startswith(stem + ":"):
                        return  # delivered before (maybe already read): a retry, not a new mail
            fd, tmp = tempfile.mkstemp(dir=self.directory / "tmp", prefix=f"{stem}.")
            with os.fdopen(fd, "wb") as fh:
                fh.write(raw)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.directory / "new" / stem)
        except OSError as exc:
            raise DeliveryError(f"cannot deliver into maildir {self.directory}: {exc}") from exc

    def close(self) -> None:
        self.box.close()


def open_transport(settings: Settings) -> Transport:
    if settings.smtp_host:
        return SmtpTransport(
            settings.smtp_host,
            settings.smtp_port,
            user=settings.smtp_user,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
            ssl=settings.smtp_ssl,
            timeout=settings.smtp_timeout,
        )
    if settings.outbox_format == "maildir":
        return MaildirTransport(settings.outbox_dir)
    return FileTransport(settings.outbox_dir)
