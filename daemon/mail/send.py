"""The outbox worker: claim queued mail, send it, record the outcome.

Order matters for "never lose, never silently double": the row is marked `sending` with a lease
before any byte goes out, and `sent` only after the server accepted. A sender killed between
the two leaves the row `sending`; when the lease runs out another sender sends it again with the
same stored bytes, so the same Message-ID: the one duplicate DESIGN.md §7 allows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from daemon.config import Settings
from daemon.errors import DeliveryError
from daemon.mail.deliver import Transport, open_transport
from daemon.mail.message import dkim_sign
from daemon.mail.workers import Child, child_pipes, recv_frame, send_frame
from daemon.store.db import make_engine
from daemon.store.repo import Repo
from daemon.store.tables import Outbox

log = logging.getLogger(__name__)

BOUNCE_LIMIT = 3
MAX_RETRY_DELAY = timedelta(hours=2)
BASE_RETRY_DELAY = timedelta(seconds=30)
MARK_BATCH = 25  # accepted rows marked sent per transaction, at most
MARK_WINDOW_S = 0.05  # ... and no accepted row waits longer than this for its mark
MARK_NOW_AFTER_S = 0.01  # a send slower than this is marked at once: nothing to gain by waiting
FOLLOW_POLL_S = 0.05  # how often a sender following a digest run looks for newly queued mail
HANDOFF_QUEUED = 200  # mails waiting, mid-run, that move sending to a process of its own

T = TypeVar("T")


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
        # Only a sender built from settings alone can be rebuilt in another process.
        self.portable = transport_factory is None and lease is None and retry_base == BASE_RETRY_DELAY and clock is None
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

    def send_due(self, *, limit: int | None = None, stop_if: Callable[[], bool] | None = None) -> SendReport:
        """Send every due row, in batches, over one transport; stop the batch on a dead server.

        Accepted rows are marked sent together (see _Marks), never before the server accepted them.
        `stop_if` is asked between batches (never mid-batch: every claimed row is sent or released).
        """
        report = SendReport()
        batch = limit or self.settings.send_batch
        envelope = _envelope_from(self.settings)
        marks = _Marks(self.repo, self.clock)
        transport: Transport | None = None
        try:
            while True:
                rows = self.repo.claim_outbox(self.clock(), lease=self.lease, limit=batch)
                if not rows:
                    break
                contacts = self.repo.contacts(r.subscriber_id for r in rows)
                server_down = False
                for row in rows:
                    assert row.id is not None
                    email, status = contacts.get(row.subscriber_id, ("", "gone"))
                    if status in ("unsubscribed", "bounced", "gone"):
                        self.repo.mark_failed(row.id, f"subscriber is {status}")
                        report.failed += 1
                        continue
                    if server_down:
                        self.repo.mark_retry(row.id, "server unavailable", self.clock() + self._delay(row.attempts))
                        report.retried += 1
                        continue
                    started = time.monotonic()
                    try:
                        if transport is None:
                            transport = self.transport_factory()
                        transport.send(self._sign(row.raw), sender=envelope, recipients=[email])
                    except DeliveryError as exc:
                        if exc.permanent:
                            self.repo.mark_failed(row.id, str(exc))
                            report.failed += 1
                            if self.repo.record_bounce(row.subscriber_id, str(exc), limit=BOUNCE_LIMIT):
                                report.bounced.append(email)
                        else:
                            self.repo.mark_retry(row.id, str(exc), self.clock() + self._delay(row.attempts))
                            report.retried += 1
                            server_down = True
                            if transport is not None:
                                transport.close()
                                transport = None
                        report.errors.append(f"{email}: {exc}")
                        continue
                    marks.accepted(row.id, slow=time.monotonic() - started >= MARK_NOW_AFTER_S)
                    report.sent += 1
                marks.flush()
                if server_down or (stop_if is not None and stop_if()):
                    break
        finally:
            marks.flush()
            if transport is not None:
                transport.close()
        return report

    def send_following(
        self,
        done: threading.Event,
        *,
        poll_s: float = FOLLOW_POLL_S,
        connections: int | None = None,
        stop_if: Callable[[], bool] | None = None,
    ) -> SendReport:
        """send_due, over and over, while another thread is still queueing mail, then once more.

        Closing windows is CPU work and sending is mostly waiting on the SMTP server, so running
        both at once keeps the machine busy. With `connections` > 1 (settings.smtp_connections)
        that many sessions send side by side, each its own send_due loop: while one waits for the
        server's reply the other is sending, where one session leaves both ends idle by turns.
        Each send_due claims rows under the lease, so the outbox rules are those of any two
        senders. Stops early when the server is down (rows are then in back-off): the next
        scheduled send picks them up; and, before `done`, whenever `stop_if()` says so (the
        caller then owes the outbox another sender).
        """
        count = max(1, connections if connections is not None else self.settings.smtp_connections)
        if count == 1:
            return self._follow(done, poll_s, stop_if)
        reports: list[SendReport] = []
        failures: list[BaseException] = []

        def run() -> None:
            try:
                reports.append(self._follow(done, poll_s, stop_if))
            except BaseException as exc:  # re-raised below, after every session has stopped
                failures.append(exc)

        threads = [threading.Thread(target=run, name=f"keynews-smtp-{i}", daemon=True) for i in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failures:
            raise failures[0]
        return _merge(reports)

    def _follow(self, done: threading.Event, poll_s: float, stop_if: Callable[[], bool] | None) -> SendReport:
        total = SendReport()
        while True:
            finished = done.is_set()  # read before draining: nothing queued after this is missed
            if not finished and stop_if is not None and stop_if():
                return total
            report = self.send_due(stop_if=None if finished else stop_if)
            total = _merge([total, report])
            if finished or report.retried:
                return total
            if not report.sent and not report.failed:
                done.wait(poll_s)

    def _delay(self, attempts: int) -> timedelta:
        return retry_delay(attempts, self.rng, self.retry_base)


def _merge(reports: list[SendReport]) -> SendReport:
    total = SendReport()
    for r in reports:
        total.sent += r.sent
        total.retried += r.retried
        total.failed += r.failed
        total.bounced.extend(r.bounced)
        total.errors.extend(r.errors)
    return total


def _envelope_from(settings: Settings) -> str:
    addr = settings.mail_from
    if "<" in addr and ">" in addr:
        addr = addr.split("<", 1)[1].split(">", 1)[0]
    return addr.strip()


class _Marks:
    """Rows the server accepted, marked sent a few at a time instead of one transaction each.

    A row is only ever added after its server accepted it, so a mark is never early. A crash before
    the flush leaves those rows `sending`; their lease runs out and they are sent again with the
    same stored bytes and Message-ID: the one duplicate DESIGN.md §7 allows. The window is kept
    small: at most MARK_BATCH rows or MARK_WINDOW_S seconds, and a slow send (a slow server, where
    batching saves nothing) is marked at once, so at most the message in flight repeats there.
    """

    def __init__(self, repo: Repo, clock: Callable[[], datetime]) -> None:
        self.repo = repo
        self.clock = clock
        self._ids: list[int] = []
        self._since = 0.0

    def accepted(self, outbox_id: int, *, slow: bool) -> None:
        if not self._ids:
            self._since = time.monotonic()
        self._ids.append(outbox_id)
        if slow or len(self._ids) >= MARK_BATCH or time.monotonic() - self._since >= MARK_WINDOW_S:
            self.flush()

    def flush(self) -> None:
        if self._ids:
            ids, self._ids = self._ids, []
            self.repo.mark_sent_many(ids, self.clock())


def close_and_send(close: Callable[[], T], sender: Sender, *, process: bool | None = None) -> tuple[T, SendReport]:
    """Run `close` (DigestService.close_due) here while `sender` mails what it queues.

    The first digests go out while later ones are still being rendered, so a run takes about as
    long as the slower of the two instead of their sum. Used by `keynews digest send` and the
    scheduler's digest job; the result of `close` is returned (or its exception raised) once the
    sender has drained the outbox too.

    Sending starts in a thread. A thread waiting on SMTP replies queues behind the closing thread
    for the GIL after every reply, which made a big overlapped run slower than closing and then
    sending; so when HANDOFF_QUEUED mails are waiting (a big run, the closer ahead of the sender)
    on a multi-core machine, the thread stops and a sender process takes over (`process=None`;
    True: a process from the start; False: the thread throughout). The scheduler's idle ticks
    thus start no process. Every sender claims under the same leases.
    """
    if process:
        return _close_and_send_process(close, sender)
    may_hand_off = process is None and sender.portable and (os.cpu_count() or 1) > 1
    handoff = threading.Event()

    def backlog() -> bool:
        if sender.repo.count(Outbox, status="queued") >= HANDOFF_QUEUED:
            handoff.set()
        return handoff.is_set()

    done = threading.Event()
    result: list[SendReport] = []
    failure: list[BaseException] = []
    followers: list[Child] = []

    def run() -> None:
        try:
            result.append(sender.send_following(done, stop_if=backlog if may_hand_off else None))
            if handoff.is_set():
                try:
                    followers.append(_start_follower(sender))
                except OSError as exc:  # no process to be had: this thread goes on sending
                    log.warning("could not start a sender process (%s); sending from this one", exc)
                    result.append(sender.send_following(done))
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="keynews-sender", daemon=True)
    thread.start()
    try:
        closed = close()
    except BaseException:
        done.set()
        thread.join()
        for child in followers:
            _finish_follower(child, sender)
        raise
    done.set()
    thread.join()
    if failure:
        for child in followers:
            _finish_follower(child, sender)
        raise failure[0]
    reports = result + [_finish_follower(child, sender) for child in followers]
    return closed, _merge(reports)


FOLLOWER = ("daemon.mail.send", "follower_main")  # the sender process's entry point


def _start_follower(sender: Sender) -> Child:
    child = Child(*FOLLOWER)
    with contextlib.suppress(OSError):
        child.send(sender.settings)
    return child


def _finish_follower(child: Child, sender: Sender) -> SendReport:
    """Tell the sender process closing is over, and take its report once it has drained the outbox.

    If it failed or died, this process sends what is left: the mail is in the outbox either way,
    under leases, so a child that died mid-send leaves at most the message in flight to be sent
    again, as any dead sender does.
    """
    reply: object = None
    try:
        with contextlib.suppress(OSError):
            child.send("done")
        with contextlib.suppress(EOFError, OSError):
            reply = child.receive()
    finally:
        child.stop()
    if isinstance(reply, SendReport):
        return reply
    log.warning("sender process failed (%s); sending from this process", reply or "it exited")
    finished = threading.Event()
    finished.set()
    return sender.send_following(finished)


def _close_and_send_process(close: Callable[[], T], sender: Sender) -> tuple[T, SendReport]:
    """close() here, the sender in a child from the start."""
    child = _start_follower(sender)
    try:
        closed = close()
    except BaseException:
        _finish_follower(child, sender)
        raise
    return closed, _finish_follower(child, sender)


def follower_main() -> None:
    """The sender process of a digest run: settings in, then send_following until "done" (or EOF).

    It opens its own database connection; the outbox leases keep it and any other sender apart.
    Its SendReport goes back to the parent, or the error's text if it failed.
    """
    stdin, stdout = child_pipes()
    settings = recv_frame(stdin)
    done = threading.Event()

    def watch() -> None:
        with contextlib.suppress(EOFError):
            recv_frame(stdin)
        done.set()  # "done", or the parent is gone: drain and stop either way

    threading.Thread(target=watch, name="keynews-sender-watch", daemon=True).start()
    engine = make_engine(settings.database_url)
    try:
        reply: object = Sender(settings, Repo(engine)).send_following(done)
    except Exception as exc:
        reply = f"{type(exc).__name__}: {exc}"
    finally:
        engine.dispose()
    send_frame(stdout, reply)
