"""APScheduler wiring for `keynews run`.

Source due times live in the database (source.next_due_at), so the scheduler needs one periodic
"poll what is due" job however many sources there are, not one job per source.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from daemon.ingest.pipeline import Pipeline
from daemon.mail.digest import DigestService
from daemon.mail.send import Sender, close_and_send
from daemon.service import App
from daemon.store.repo import utcnow

log = logging.getLogger("keynews.schedule")


UNCONFIRMED_TTL = timedelta(days=7)  # an address that never confirmed is forgotten after this


class Jobs:
    """The periodic jobs; each is safe to run late or to skip (coalesced, one instance at a time)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.pipeline = Pipeline(app.settings, app.repo, app.watchlist, app.specs)
        self.pipeline.sync(utcnow())
        self.digests = DigestService(app.settings, app.repo, app.watchlist)
        self.sender = Sender(app.settings, app.repo)

    async def poll(self, now: datetime | None = None) -> None:
        report = await self.pipeline.poll_due(now or utcnow(), self.app.rules)
        for src in report.errors:
            log.warning("source %s failed: %s", src.key, src.error)
        if report.sources:
            log.info(
                "polled %d sources: %d new items, %d matches", len(report.sources), report.new_items, report.matches
            )

    async def digest(self) -> None:
        # close windows and mail what they queue at the same time (see sender.close_and_send)
        closed, sent = await asyncio.to_thread(
            close_and_send, lambda: self.digests.close_due(utcnow()), Sender(self.app.settings, self.app.repo)
        )
        if closed.queued or closed.alerts:
            log.info("queued %d digests, %d alerts", closed.queued, closed.alerts)
        if sent.sent or sent.retried or sent.failed:
            log.info("mail: sent %d, retrying %d, failed %d", sent.sent, sent.retried, sent.failed)

    async def send(self) -> None:
        report = await asyncio.to_thread(self.sender.send_due)
        if report.sent or report.retried or report.failed:
            log.info("mail: sent %d, retrying %d, failed %d", report.sent, report.retried, report.failed)

    async def reload_rules(self) -> None:
        self.app.reload_rules()

    async def prune(self) -> None:
        forgotten = await asyncio.to_thread(self.app.repo.drop_unconfirmed, utcnow() - UNCONFIRMED_TTL)
        if forgotten:
            log.info("subscribers: forgot %d addresses never confirmed", forgotten)
        days = self.app.settings.outbox_keep_days
        if days > 0:
            dropped = await asyncio.to_thread(self.app.repo.prune_outbox, utcnow() - timedelta(days=days))
            if dropped:
                log.info("outbox: dropped the mail bytes of %d rows older than %d days", dropped, days)


async def run_forever(app: App, *, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    jobs = Jobs(app)
    scheduler = AsyncIOScheduler(
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300}, timezone="UTC"
    )
    tick = max(app.settings.tick_seconds, 1)
    scheduler.add_job(jobs.poll, "interval", seconds=tick, id="poll", next_run_time=utcnow())
    scheduler.add_job(jobs.digest, "interval", seconds=60, id="digest", next_run_time=utcnow())
    scheduler.add_job(jobs.send, "interval", seconds=max(tick, 15), id="send")
    scheduler.add_job(jobs.reload_rules, "interval", seconds=max(app.settings.rules_reload_s, 1), id="rules")
    scheduler.add_job(jobs.prune, "interval", hours=6, id="prune", next_run_time=utcnow())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
        loop.add_signal_handler(signal.SIGHUP, lambda: app.reload_rules(force=True))
    scheduler.start()
    web_server = None
    if app.settings.web_port > 0:
        from daemon.web.app import WebApp, serve

        try:
            web_server, _thread = serve(
                WebApp(app.settings, app.repo, app.watchlist), app.settings.web_host, app.settings.web_port
            )
            log.info("subscriber pages on http://%s:%d", app.settings.web_host, web_server.server_port)
        except OSError as exc:
            log.error("web pages not served (%s:%d): %s", app.settings.web_host, app.settings.web_port, exc)
    log.info(
        "keynews running: %d sources, %d rules, %d watched tickers",
        len(app.specs),
        len(app.rules),
        len(app.watchlist.tickers),
    )
    try:
        await stop.wait()
    finally:
        log.info("stopping: waiting for running jobs")
        if web_server is not None:
            web_server.shutdown()
        scheduler.shutdown(wait=True)
        app.close()
