"""A real SMTP server on 127.0.0.1 for tests (aiosmtpd), with knobs to misbehave.

`SmtpSink` keeps every accepted message as (mail_from, rcpt_tos, raw bytes) and can delay,
fail the next N messages with a 4xx/5xx, refuse a recipient, require STARTTLS / AUTH, and be
stopped and started again on the same port to simulate an outage.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        with self.sink._lock:
            code = self.sink._rejected.get(address.lower())
        if code is not None:
            return f"{code} 5.1.1 <{address}>: recipient rejected"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        with self.sink._lock:
            delay = self.sink._delay
            fail_code = None
            if self.sink._fail_left > 0:
                self.sink._fail_left -= 1
                fail_code = self.sink._fail_code
            if not any(s is session for s in self.sink._sessions):
                self.sink._sessions.append(session)  # strong refs: identities never reused
        if delay:
            await asyncio.sleep(delay)
        if fail_code is not None:
            return f"{fail_code} 4.3.0 try again later" if fail_code < 500 else f"{fail_code} 5.7.1 rejected"
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode("utf-8")
        with self.sink._lock:
            self.sink._messages.append((str(envelope.mail_from), list(envelope.rcpt_tos), data))
        return "250 2.0.0 OK: queued"


class SmtpSink:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        implicit_tls_context: ssl.SSLContext | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.tls_context = tls_context
        self.require_starttls = require_starttls
        self.implicit_tls_context = implicit_tls_context
        self.auth = auth
        self._lock = threading.Lock()
        self._messages: list[tuple[str, list[str], bytes]] = []
        self._sessions: list[Session] = []
        self._rejected: dict[str, int] = {}
        self._delay = 0.0
        self._fail_left = 0
        self._fail_code = 451
        self.auth_attempts: list[tuple[str, bool]] = []
        self._controller: Controller | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def _authenticate(
        self, server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = False
        user = ""
        if isinstance(auth_data, LoginPassword) and self.auth is not None:
            user = auth_data.login.decode("utf-8", "replace")
            ok = (user, auth_data.password.decode("utf-8", "replace")) == self.auth
        with self._lock:
            self.auth_attempts.append((user, ok))
        return AuthResult(success=ok, handled=False)

    def start(self) -> SmtpSink:
        if self._controller is not None:
            return self
        kwargs: dict[str, Any] = {}
        if self.tls_context is not None:
            kwargs["tls_context"] = self.tls_context
            kwargs["require_starttls"] = self.require_starttls
        if self.auth is not None:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_require_tls"] = self.tls_context is not None or self.implicit_tls_context is not None
        controller = Controller(
            _Handler(self),
            hostname=self.host,
            port=self.port,
            ssl_context=self.implicit_tls_context,
            server_hostname="localhost",
            ready_timeout=10.0,
            **kwargs,
        )
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- knobs ----------------------------------------------------------------------------

    def delay(self, seconds: float) -> None:
        with self._lock:
            self._delay = seconds

    def fail_next(self, n: int, code: int = 451) -> None:
        with self._lock:
            self._fail_left = n
            self._fail_code = code

    def reject_rcpt(self, address: str, code: int = 550) -> None:
        with self._lock:
            self._rejected[address.lower()] = code

    # -- observations ---------------------------------------------------------------------

    @property
    def messages(self) -> list[tuple[str, list[str], bytes]]:
        with self._lock:
            return list(self._messages)

    @property
    def sessions(self) -> int:
        """Connections that carried at least one DATA command."""
        with self._lock:
            return len(self._sessions)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
            self._sessions.clear()
