"""Digest delivery throughput: the real close_due + send_due path against a local aiosmtpd.

Each size runs in a fresh child process over its own SQLite file (migrated with
daemon.store.db.upgrade, seeded through Repo.store_item / Repo.add_subscriber / Repo.store_quotes):
200 tickers with 1-3 stories each (some stories told by two wires, so "also reported by" is
exercised), 60 daily bars per ticker, and every subscriber on 3-10 tickers so that their digest
carries 5-20 stories. Seeding is not timed. Timed is daemon.mail.send.close_and_send, exactly as
`keynews digest send` and the scheduler run it: DigestService.close_due (build, render, queue
into the outbox) while a sender (for a run this big, a process of its own with
settings.smtp_connections SMTP sessions) runs Sender.send_due (claim, send, mark sent) on
whatever is queued, from the start of closing to the last message accepted. `--sequential`
times close_due, then one send_due over one session.

The SMTP server is aiosmtpd on 127.0.0.1 in a separate process, so it does not share the
client's GIL. The limit ("raw") is the same number of pre-built messages (raw bytes taken from the
outbox rows, cycled from a pool of at most 1,000) sent with smtplib over one connection to the
same server: no database, no rendering.

Memory: peak RSS of the timed phase only (VmHWM is reset after seeding through
/proc/self/clear_refs; elsewhere ru_maxrss of the child), and the peak RSS of its largest child
process (the sender process; render workers on machines with cores to spare), sampled from
/proc every 0.1 s (ru_maxrss would count the parent's image the child is forked from). A smaller size
runs first, so the growth between the two sizes shows whether memory is flat in the number of
subscribers. CPU per message (this process plus its children, the sender included) is printed
too: on a shared machine it is steadier than the rates.

Where the time goes (see --profile; 2-core machine, 10,000 subscribers, 32 KiB messages): the
closing process spends ~2 ms of CPU a message (each story rendered and sanitized once per run,
then per mail: the page frame through Jinja and nh3 ~0.5 ms, MIME ~0.3 ms, zlib ~0.1 ms, the
rest reading subscribers and writing the outbox); the sender process ~0.8 ms; aiosmtpd ~1 ms.
The server's cost per message is what caps the raw rate.

Last line: `msgs_per_s=N ratio_to_raw=R` for the largest size.

    .venv/bin/python bench/deliver_bench.py [--subscribers 10000] [--small 2000] [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import resource
import smtplib
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
TICKERS = 200
RAW_POOL = 1000
SOURCES = [("wire-a", "Business Wire"), ("wire-b", "GlobeNewswire"), ("sec", "SEC EDGAR"), ("wire-c", "PR Newswire")]
RULES = [
    ("results", "Quarterly or annual results", "earnings", "financial results", "headline"),
    ("deals", "Mergers and acquisitions", "m&a", "to acquire", "headline"),
    ("guidance", "Guidance raised", "guidance", "raises outlook", "headline"),
    ("filing", "Material event filing", "filing", "8-K", "form"),
    ("exec", "Executive change", "management", "chief executive", "summary"),
]
WORDS = [
    "revenue",
    "growth",
    "cloud",
    "services",
    "quarter",
    "record",
    "margin",
    "customers",
    "data",
    "centre",
    "expansion",
    "partner",
    "contract",
    "subscription",
    "operating",
    "income",
    "shares",
    "dividend",
    "board",
    "guidance",
    "outlook",
    "market",
    "demand",
]


# --------------------------------------------------------------------------- SMTP server process


def _serve(port: int, count: Synchronized, ready: Any, stop: Any) -> None:
    """aiosmtpd in its own process: counts accepted messages, keeps none of them."""
    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            count.value += 1
            return "250 2.0.0 OK: queued"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port, ready_timeout=10.0)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


class SmtpServerProcess:
    def __init__(self) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        ctx = mp.get_context("spawn")
        self.count: Synchronized = ctx.Value("q", 0, lock=False)
        self._ready = ctx.Event()
        self._stop = ctx.Event()
        self._proc = ctx.Process(target=_serve, args=(self.port, self.count, self._ready, self._stop), daemon=True)

    def __enter__(self) -> SmtpServerProcess:
        self._proc.start()
        if not self._ready.wait(20):
            raise RuntimeError("aiosmtpd did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.terminate()


# --------------------------------------------------------------------------- seeding


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def seed(repo: Any, subscribers: int, rng: random.Random) -> None:
    from daemon.models import Explanation, Item, Match, Quote, Severity

    symbols = [f"T{i:03d}" for i in range(TICKERS)]
    per_ticker: dict[str, int] = {}
    uid = 0
    for sym in symbols:
        stories = rng.randint(1, 3)
        per_ticker[sym] = stories
        for k in range(stories):
            rule = rng.choice(RULES)
            published = NOW - timedelta(hours=rng.randint(1, 20), minutes=rng.randint(0, 59))
            cluster = f"c-{sym}-{k}"
            title = f"{sym} Holdings {rule[3]} {_sentence(rng, 8)}"
            tellers = rng.sample(SOURCES, 2 if rng.random() < 0.3 else 1)
            for sid, label in tellers:
                uid += 1
                item = Item(
                    uid=f"u{uid}",
                    source_id=sid,
                    source_label=label,
                    url=f"https://{sid}.example.com/news/{sym.lower()}/{uid}",
                    title=title,
                    summary=f"{sym} Holdings said {_sentence(rng, 35)}.",
                    published_at=published,
                    tickers=(sym,),
                    form="8-K" if rule[0] == "filing" else None,
                )
                match = Match(
                    rule_id=rule[0],
                    rule_title=rule[1],
                    category=rule[2],
                    severity=rng.choice((Severity.LOW, Severity.MEDIUM, Severity.HIGH)),
                    ticker=sym,
                    explanations=(Explanation(rule[0], rule[4], rule[3], 12, 12 + len(rule[3])),),
                )
                repo.store_item(item, cluster_id=cluster, matches=[match], now=published + timedelta(minutes=2))
    quotes = []
    for sym in symbols:
        price = rng.uniform(5, 400)
        for d in range(60):
            price *= 1 + rng.uniform(-0.03, 0.03)
            at = datetime(2026, 9, 1, 21, tzinfo=UTC) + timedelta(days=d)
            quotes.append(Quote(ticker=sym, at=at, close=round(price, 2), volume=rng.randint(10**5, 10**7)))
    repo.store_quotes(quotes)
    for i in range(subscribers):
        while True:
            chosen = rng.sample(symbols, rng.randint(3, 10))
            if 5 <= sum(per_ticker[s] for s in chosen) <= 20:
                break
        repo.add_subscriber(
            f"sub{i:06d}@example.com",
            chosen,
            now=NOW - timedelta(days=3),
            tz=rng.choice(("UTC", "America/New_York", "Europe/Berlin", "Asia/Tokyo")),
        )


# --------------------------------------------------------------------------- one run


@dataclass
class RunResult:
    subscribers: int
    messages: int
    close_s: float
    send_s: float
    raw_msgs: int
    raw_s: float
    peak_rss_mb: float
    peak_source: str
    worker_rss_mb: float
    cpu_close_s: float
    cpu_send_s: float
    avg_bytes: int
    seed_s: float
    sequential: bool = False
    profile: str = ""

    @property
    def e2e(self) -> float:
        """Messages over the wall time from the start of closing to the last message accepted."""
        return self.messages / (self.close_s + self.send_s)

    @property
    def raw_rate(self) -> float:
        return self.raw_msgs / self.raw_s


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_mb(reset_ok: bool) -> tuple[float, str]:
    if reset_ok:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024, "VmHWM (timed phase)"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "ru_maxrss (whole child)"


class ChildRss:
    """Peak VmRSS of this process's children, sampled from /proc while the timed phase runs."""

    def __init__(self) -> None:
        import threading

        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ChildRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = str(os.getpid())
        while not self._stop.wait(0.1):
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{pid}/status") as fh:
                        fields = dict(line.split(":", 1) for line in fh if ":" in line)
                except OSError:
                    continue
                if fields.get("PPid", "").strip() == me and "VmRSS" in fields:
                    self.peak_mb = max(self.peak_mb, int(fields["VmRSS"].split()[0]) / 1024)


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the render workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def send_raw(port: int, messages: list[tuple[str, bytes]], total: int, sender: str) -> float:
    """The limit: pre-built bytes over one smtplib session, nothing else."""
    smtp = smtplib.SMTP("127.0.0.1", port, timeout=30)
    smtp.ehlo()
    start = time.perf_counter()
    for i in range(total):
        rcpt, raw = messages[i % len(messages)]
        smtp.sendmail(sender, [rcpt], raw)
    elapsed = time.perf_counter() - start
    smtp.quit()
    return elapsed


def run_size(subscribers: int, port: int, profile: bool, sequential: bool, out: Connection) -> None:
    from sqlalchemy import select

    from daemon.config import Settings
    from daemon.mail.digest import CloseReport, DigestService
    from daemon.mail.send import Sender, _envelope_from, close_and_send
    from daemon.models import Ticker, Watchlist
    from daemon.store.db import make_engine, upgrade
    from daemon.store.repo import Repo
    from daemon.store.tables import Outbox, Subscriber

    with tempfile.TemporaryDirectory(prefix="deliver-bench-") as tmp:
        settings = Settings(
            database_url=f"sqlite:///{Path(tmp) / 'keynews.db'}",
            outbox_dir=Path(tmp) / "outbox",
            secret_key="bench-secret",
            mail_from="keynews <news@keynews.test>",
            base_url="https://news.keynews.test",
            smtp_host="127.0.0.1",
            smtp_port=port,
        )
        engine = make_engine(settings.database_url)
        upgrade(engine)
        repo = Repo(engine)
        rng = random.Random(20261127 + subscribers)
        t0 = time.perf_counter()
        seed(repo, subscribers, rng)
        seed_s = time.perf_counter() - t0
        watchlist = Watchlist(tuple(Ticker(f"T{i:03d}", f"T{i:03d} Holdings Inc.") for i in range(TICKERS)))

        reset_ok = _reset_peak()
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        service = DigestService(settings, repo, watchlist)
        sender = Sender(settings, repo)
        with ChildRss() as children:
            t0, c0 = time.perf_counter(), _cpu()
            if sequential:
                closed = service.close_due(NOW, force_window="bench:1")
                t1, c1 = time.perf_counter(), _cpu()
                report = sender.send_due()
            else:
                # as the daemon does it (daemon.mail.send.close_and_send): the sender mails what
                # close_due queues while it renders the next pages
                marks: list[tuple[float, float]] = []

                def close() -> CloseReport:
                    try:
                        return service.close_due(NOW, force_window="bench:1")
                    finally:
                        marks.append((time.perf_counter(), _cpu()))

                closed, report = close_and_send(close, sender)
                t1, c1 = marks[0]
            t2, c2 = time.perf_counter(), _cpu()
        if profiler is not None:
            profiler.disable()
        peak, source = _peak_mb(reset_ok)
        if report.sent != closed.queued + closed.alerts or report.failed or report.retried:
            raise RuntimeError(f"delivery incomplete: closed {closed}, sent {report}")

        outbox, subscriber = Outbox.__table__, Subscriber.__table__
        with engine.connect() as conn:  # through the column types: the raw column is packed
            rows = conn.execute(
                select(subscriber.c.email, outbox.c.raw)
                .join(subscriber, subscriber.c.id == outbox.c.subscriber_id)
                .where(outbox.c.status == "sent")
                .order_by(outbox.c.id)
                .limit(RAW_POOL)
            ).all()
        pool: list[tuple[str, bytes]] = [(str(email), bytes(raw)) for email, raw in rows]
        avg_bytes = sum(len(r) for _e, r in pool) // max(len(pool), 1)
        raw_s = send_raw(port, pool, report.sent, _envelope_from(settings))
        engine.dispose()

    text = ""
    if profiler is not None:
        import io
        import pstats

        buf = io.StringIO()
        stats = pstats.Stats(profiler, stream=buf)
        stats.sort_stats("cumulative").print_stats(40)
        stats.sort_stats("tottime").print_stats(30)
        text = buf.getvalue()
    out.send(
        RunResult(
            subscribers=subscribers,
            messages=report.sent,
            close_s=t1 - t0,
            send_s=t2 - t1,
            sequential=sequential,
            raw_msgs=report.sent,
            raw_s=raw_s,
            peak_rss_mb=peak,
            peak_source=source,
            worker_rss_mb=children.peak_mb,
            cpu_close_s=c1 - c0,
            cpu_send_s=c2 - c1,
            avg_bytes=avg_bytes,
            seed_s=seed_s,
            profile=text,
        )
    )
    out.close()


def measure(subscribers: int, server: SmtpServerProcess, profile: bool, sequential: bool) -> RunResult:
    """One size in a fresh process, so its peak memory is its own."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=run_size, args=(subscribers, server.port, profile, sequential, child))
    proc.start()
    child.close()
    try:
        result: RunResult = parent.recv()
    except EOFError:
        proc.join()
        raise RuntimeError(f"run for {subscribers} subscribers died (exit {proc.exitcode})") from None
    proc.join()
    return result


def report(r: RunResult) -> None:
    print(
        f"{r.subscribers:>6} subscribers: {r.messages} messages (avg {r.avg_bytes / 1024:.1f} KiB), "
        f"seeding {r.seed_s:.1f} s (not timed)"
    )
    cpu = (r.cpu_close_s + r.cpu_send_s) / r.messages * 1000
    if r.sequential:
        print(
            f"    build+render+queue (close_due): {r.close_s:7.2f} s  {r.messages / r.close_s:8.0f} msgs/s"
            f"   (CPU incl. workers {r.cpu_close_s / r.messages * 1000:.1f} ms/msg)"
        )
        print(
            f"    claim+send+mark     (send_due): {r.send_s:7.2f} s  {r.messages / r.send_s:8.0f} msgs/s"
            f"   (client CPU {r.cpu_send_s / r.messages * 1000:.1f} ms/msg)"
        )
    else:
        print(f"    close_due, sender following : {r.close_s:7.2f} s  {r.messages / r.close_s:8.0f} msgs/s closed")
        print(f"    ... last message accepted     : {r.send_s:7.2f} s later")
    print(
        f"    end to end                    : {r.close_s + r.send_s:7.2f} s  {r.e2e:8.0f} msgs/s"
        f"   (CPU of client + workers {cpu:.1f} ms/msg)"
    )
    print(f"    raw smtplib, one connection   : {r.raw_s:7.2f} s  {r.raw_rate:8.0f} msgs/s")
    print(f"    ratio end-to-end / raw        : {r.e2e / r.raw_rate:.3f}")
    print(f"    peak RSS                      : {r.peak_rss_mb:7.1f} MiB  [{r.peak_source}]")
    print(f"    peak RSS of a child process   : {r.worker_rss_mb:7.1f} MiB  (sender or render workers; 0: none)")
    if r.profile:
        print(r.profile)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=0, help="smaller size run first (default: a fifth)")
    parser.add_argument("--quick", action="store_true", help="1,000 subscribers (and 200 first): a smoke run")
    parser.add_argument("--profile", action="store_true", help="cProfile the timed phase of the large run")
    parser.add_argument(
        "--sequential", action="store_true", help="close everything, then send (the daemon overlaps the two)"
    )
    args = parser.parse_args(argv)
    large = 1000 if args.quick else args.subscribers
    small = args.small or max(large // 5, 1)
    print(f"deliver_bench: {small} then {large} subscribers, {TICKERS} tickers, cpus={os.cpu_count()}")
    with SmtpServerProcess() as server:
        first = measure(small, server, False, args.sequential)
        report(first)
        second = measure(large, server, args.profile, args.sequential)
        report(second)
        if server.count.value != 2 * (first.messages + second.messages):
            print(f"warning: server counted {server.count.value} messages", file=sys.stderr)
    growth = second.peak_rss_mb - first.peak_rss_mb
    print(
        f"memory: peak RSS {first.peak_rss_mb:.1f} MiB at {small} -> {second.peak_rss_mb:.1f} MiB at {large} "
        f"subscribers ({growth:+.1f} MiB for {large / small:.1f}x the subscribers); largest child "
        f"{first.worker_rss_mb:.1f} -> {second.worker_rss_mb:.1f} MiB"
    )
    print(f"msgs_per_s={second.e2e:.0f} ratio_to_raw={second.e2e / second.raw_rate:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
