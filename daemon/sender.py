"""The outbox worker: claim queued mail, send it, record the outcome.

Order matters for "never lose, never silently double": the row is marked `sending` with a lease
before any byte goes out, and `sent` only after the server accepted. A sender killed between
the two leaves the row `sending`; when the lease runs out another sender sends it again with the
same stored bytes, so the same Message-ID: the one duplicate DESIGN.md §7 allows.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from daemon.config import Settings
from daemon.deliver import Transport, open_transport
from daemon.errors import DeliveryError
from daemon.mailmsg import dkim_sign
from daemon.store.repo import Repo

BOUNCE_LIMIT = 3
MAX_RETRY_DELAY = timedelta(hours=2)
BASE_RETRY_DELAY = timedelta(seconds=30)


@dataclass
class SendReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    bounced: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def retry_delay(attempts: int, rng: random.Random, base: timedelta = BASE_RETRY_DELAY) -> timedelta:
    """Exponential backoff with full jitter on the upper half, so a recovering server is not stampeded."""
    cap = min(base * (2 ** max(attempts - 1, 0)), MAX_RETRY_DELAY)
    return cap / 2 + cap / 2 * rng.random()


class Sender:
    def __init__(
        self,
        settings: Settings,
        repo: Repo,
        *,
        transport_factory: Callable[[], Transport] | None = None,
        lease: timedelta | None = None,
        retry_base: timedelta = BASE_RETRY_DELAY,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.transport_factory = transport_factory or (lambda: open_transport(settings))
        self.lease = lease or timedelta(seconds=settings.send_lease_s)
        self.retry_base = retry_base
        self.rng = random.Random()
        from daemon.store.repo import utcnow

        self.clock = clock or utcnow
        self._dkim_key: bytes | None = None
        if settings.dkim_key_file and settings.dkim_selector and settings.dkim_domain:
            self._dkim_key = Path(settings.dkim_key_file).read_bytes()

    def _sign(self, raw: bytes) -> bytes:
        if self._dkim_key is None:
            return raw
        return dkim_sign(
            raw,
            selector=self.settings.dkim_selector,
            domain=self.settings.dkim_domain,
            private_key_pem=self._dkim_key,
        )

    def send_due(self, *, limit: int | None = None) -> SendReport:
        """Send every due row, in batches, over one transport; stop the batch on a dead server."""
        report = SendReport()
        batch = limit or self.settings.send_batch
        emails = {s.id: s for s in self.repo.subscribers()}
        transport: Transport | None = None
        try:
            while True:
                rows = self.repo.claim_outbox(self.clock(), lease=self.lease, limit=batch)
                if not rows:
                    break
                server_down = False
                for row in rows:
                    assert row.id is not None
                    sub = emails.get(row.subscriber_id)
                    if sub is None:
                        emails = {s.id: s for s in self.repo.subscribers()}
                        sub = emails.get(row.subscriber_id)
                    if sub is None or sub.status in ("unsubscribed", "bounced"):
                        self.repo.mark_failed(row.id, f"subscriber is {sub.status if sub else 'gone'}")
                        report.failed += 1
                        continue
                    if server_down:
                        self.repo.mark_retry(row.id, "server unavailable", self.clock() + self._delay(row.attempts))
                        report.retried += 1
                        continue
                    try:
                        if transport is None:
                            transport = self.transport_factory()
                        envelope = _envelope_from(self.settings)
                        transport.send(self._sign(row.raw), sender=envelope, recipients=[sub.email])
                    except DeliveryError as exc:
                        if exc.permanent:
                            self.repo.mark_failed(row.id, str(exc))
                            report.failed += 1
                            if self.repo.record_bounce(sub.id, str(exc), limit=BOUNCE_LIMIT):
                                report.bounced.append(sub.email)
                        else:
                            self.repo.mark_retry(row.id, str(exc), self.clock() + self._delay(row.attempts))
                            report.retried += 1
                            server_down = True
                            if transport is not None:
                                transport.close()
                                transport = None
                        report.errors.append(f"{sub.email}: {exc}")
                        continue
                    self.repo.mark_sent(row.id, self.clock())
                    report.sent += 1
                if server_down:
                    break
        finally:
            if transport is not None:
                transport.close()
        return report

    def _delay(self, attempts: int) -> timedelta:
        return retry_delay(attempts, self.rng, self.retry_base)


def _envelope_from(settings: Settings) -> str:
    addr = settings.mail_from
    if "<" in addr and ">" in addr:
        addr = addr.split("<", 1)[1].split(">", 1)[0]
    return addr.strip()
