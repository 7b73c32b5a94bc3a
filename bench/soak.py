"""Soak: `keynews run` for M minutes against 500 changing feeds and an SMTP server that fails now and then.

    python bench/soak.py --minutes 30 [--feeds 500] [--subscribers 20] [--fail-rate 0.05]

Everything is on 127.0.0.1: a threaded HTTP server whose feeds gain a new item every cycle
(about 10% naming watched companies, some of them critical, so alerts and immediate digests are
mailed all along), an aiosmtpd server that answers 421 to a share of messages and drops a share of
connections mid-DATA, and the daemon as an operator runs it (`python -m daemon run`, SQLite).
At the end the SMTP server stops failing, the daemon drains its outbox and is stopped with
SIGTERM; then every outbox row is compared with what the server accepted, by Message-ID.

Prints items stored, mails sent, mails expected, lost and doubled mails, errors, and the daemon's
memory (RSS of it and its children) after warm-up and at the end; last line:
`items=… mails_sent=… mails_expected=… lost=… doubled=… errors=… rss_start_mb=… rss_end_mb=… growth_pct=…`
Target (30 minutes): lost=0, doubled=0, growth under 10% after warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

REPO = Path(__file__).resolve().parents[1]

WATCHLIST = """\
tickers:
  - {symbol: KC, exchange: NASDAQ, name: Kingsoft Cloud Holdings Limited, aliases: ["Kingsoft Cloud"]}
  - {symbol: ACME, exchange: NYSE, name: Acme Widgets Inc., aliases: ["Acme Widgets"]}
  - {symbol: BOLT, exchange: NYSE, name: Bolt Robotics Corp., aliases: ["Bolt Robotics"]}
  - {symbol: ZEPH, exchange: NASDAQ, name: Zephyr Energy Inc., aliases: ["Zephyr Energy"]}
"""
COMPANIES = ("Kingsoft Cloud", "Acme Widgets", "Bolt Robotics", "Zephyr Energy")
KEY_NEWS = (
    "{c} reports third quarter {y} financial results",
    "{c} to acquire {w} maker for ${n} million",
    "{c} announces ${n} million share buyback",
    "{c} names {w} chief financial officer",
    "{c} cuts full-year revenue forecast on {w} demand",  # critical in the default pack: an alert
    "{c} prices ${n} million convertible notes offering",
)
NOISE = (
    "Markets drift as {w} traders wait for data",
    "{w} prices rise in {w2} trading session",
    "Weather delays {w} shipments across the region",
    "Opinion: what {w} means for {w2} investors",
)
WORDS = (
    "copper",
    "lithium",
    "freight",
    "chip",
    "cloud",
    "retail",
    "solar",
    "wheat",
    "coffee",
    "steel",
    "nickel",
    "cobalt",
    "shipping",
    "software",
    "battery",
    "robot",
    "storage",
    "memory",
    "network",
)


class FeedFarm:
    """Feeds that gain one item per cycle; served with ETags so unchanged bodies answer 304."""

    def __init__(self, feeds: int, cycle_s: float, seed: int = 7) -> None:
        self.feeds = feeds
        self.cycle_s = cycle_s
        self.seed = seed
        self.t0 = time.time()
        self.requests = 0
        self._lock = threading.Lock()
        self._cache: dict[tuple[int, int], bytes] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def cycle(self) -> int:
        return int((time.time() - self.t0) // self.cycle_s)

    def _item(self, feed: int, k: int) -> str:
        rng = random.Random(f"{self.seed}:{feed}:{k}")
        words = {"w": rng.choice(WORDS), "w2": rng.choice(WORDS), "n": rng.randint(50, 900), "y": 2026}
        if rng.random() < 0.10:
            title = rng.choice(KEY_NEWS).format(c=rng.choice(COMPANIES), **words)
        else:
            title = rng.choice(NOISE).format(**words)
        title = f"{title} ({feed}-{k})"  # one story per item: the soak counts mail, not folding
        when = formatdate(self.t0 + k * self.cycle_s, usegmt=True)
        link = f"https://wire.example.com/{feed}/{k}"
        return (
            f"<item><title>{title}</title><link>{link}</link><guid>{link}</guid>"
            f"<description>{title}. More in the release.</description><pubDate>{when}</pubDate></item>"
        )

    def body(self, feed: int, cycle: int) -> bytes:
        key = (feed, cycle)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        items = "".join(self._item(feed, k) for k in range(cycle, max(-1, cycle - 30), -1))
        body = (
            '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>Soak feed {feed}</title><link>https://wire.example.com/</link>"
            f"<description>soak</description>{items}</channel></rss>"
        ).encode()
        with self._lock:
            if len(self._cache) > 4 * self.feeds:
                self._cache.clear()
            self._cache[key] = body
        return body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        farm = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                farm.requests += 1
                try:
                    feed = int(self.path.rsplit("/", 1)[-1].removesuffix(".xml"))
                except ValueError:
                    self.send_error(404)
                    return
                body = farm.body(feed, farm.cycle())
                etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


class FlakySmtp:
    """Accepts mail, but answers 421 to `fail_rate` of messages and drops half as many mid-DATA."""

    def __init__(self, fail_rate: float, seed: int = 11) -> None:
        self.fail_rate = fail_rate
        self.rng = random.Random(seed)
        self.received: Counter[str] = Counter()
        self.refused = 0
        self.dropped = 0
        self._lock = threading.Lock()
        with socket.socket() as probe:  # aiosmtpd needs a fixed port to check it is up
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, ready_timeout=10)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        roll = self.rng.random()
        if roll < self.fail_rate / 2:
            with self._lock:
                self.dropped += 1
            transport = getattr(server, "transport", None)
            if transport is not None:
                transport.abort()  # the connection dies mid-transaction: nothing was accepted
            await asyncio.sleep(0)
            return "421 4.3.0 closing"
        if roll < self.fail_rate * 1.5:
            with self._lock:
                self.refused += 1
            return "421 4.3.0 try again later"
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode()
        message_id = ""
        for line in data.split(b"\r\n\r\n", 1)[0].splitlines():
            if line.lower().startswith(b"message-id:"):
                message_id = line.split(b":", 1)[1].strip().decode()
        with self._lock:
            self.received[message_id] += 1
        return "250 2.0.0 queued"


def tree_rss_mb(pid: int) -> float:
    """RSS of a process and its children (the daemon may hand sending to a child)."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def keynews(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "-m", "daemon", *args], env=env, check=True, capture_output=True)


def db_rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return list(conn.execute(sql).fetchall())
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--feeds", type=int, default=500)
    parser.add_argument("--subscribers", type=int, default=20)
    parser.add_argument("--fail-rate", type=float, default=0.05)
    parser.add_argument("--cycle", type=float, default=60.0, help="seconds between feed changes")
    args = parser.parse_args()

    farm = FeedFarm(args.feeds, args.cycle)
    farm.thread.start()
    smtp = FlakySmtp(args.fail_rate)
    smtp.controller.start()
    with tempfile.TemporaryDirectory(prefix="keynews-soak-") as tmp_name:
        tmp = Path(tmp_name)
        rules = tmp / "rules"
        rules.mkdir()
        for pack in (REPO / "rules").glob("*.yaml"):
            if pack.name not in ("watchlist.yaml", "sources.yaml"):
                (rules / pack.name).write_text(pack.read_text(encoding="utf-8"), encoding="utf-8")
        (rules / "watchlist.yaml").write_text(WATCHLIST, encoding="utf-8")
        lines = ["defaults: {every: 1m, jitter: 10s, max_age: 30d}", "sources:"]
        for n in range(args.feeds):
            lines.append(f"  - {{id: feed{n}, url: 'http://127.0.0.1:{farm.port}/feed/{n}.xml', allow_private: true}}")
        (rules / "sources.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
        db = tmp / "keynews.db"
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "KEYNEWS_CONFIG": str(tmp / "none.yaml"),
            "KEYNEWS_DATABASE_URL": f"sqlite:///{db}",
            "KEYNEWS_RULES_DIR": str(rules),
            "KEYNEWS_OUTBOX_DIR": str(tmp / "outbox"),
            "KEYNEWS_SMTP_HOST": "127.0.0.1",
            "KEYNEWS_SMTP_PORT": str(smtp.port),
            "KEYNEWS_SMTP_TIMEOUT": "5",
            "KEYNEWS_MAIL_FROM": "keynews <news@soak.example.com>",
            "KEYNEWS_BASE_URL": "https://news.soak.example.com",
            "KEYNEWS_TICK_SECONDS": "10",
            "KEYNEWS_WEB_PORT": "0",
            "KEYNEWS_USER_AGENT": "keynews-soak/1 ops@example.com",
        }
        keynews(env, "db", "upgrade")
        for n in range(args.subscribers):
            frequency = "immediate" if n % 4 else "daily"
            keynews(
                env,
                "subscribers",
                "add",
                f"reader{n}@example.com",
                "--tickers",
                "KC,ACME,BOLT,ZEPH",
                "--frequency",
                frequency,
            )
        log_path = tmp / "daemon.log"
        with log_path.open("wb") as log:
            daemon = subprocess.Popen([sys.executable, "-m", "daemon", "run"], env=env, stdout=log, stderr=log)
            started = time.time()
            end = started + args.minutes * 60
            warm = started + max(120.0, args.minutes * 60 * 0.2)
            rss_start = rss_end = 0.0
            samples: list[tuple[float, float]] = []
            while time.time() < end and daemon.poll() is None:
                time.sleep(10)
                rss = tree_rss_mb(daemon.pid)
                samples.append((time.time() - started, rss))
                if not rss_start and time.time() >= warm:
                    rss_start = rss
                print(
                    f"t={time.time() - started:6.0f}s rss={rss:6.1f} MB feed_requests={farm.requests} "
                    f"mails={sum(smtp.received.values())} refused={smtp.refused} dropped={smtp.dropped}",
                    flush=True,
                )
            rss_end = tree_rss_mb(daemon.pid)
            if not rss_start:
                rss_start = samples[0][1] if samples else rss_end
            # drain: the server stops failing and the daemon gets to send what waits
            smtp.fail_rate = 0.0
            drain_until = time.time() + 240
            while time.time() < drain_until and daemon.poll() is None:
                waiting = db_rows(db, "SELECT COUNT(*) FROM outbox WHERE status IN ('queued', 'sending')")[0][0]
                if waiting == 0:
                    break
                time.sleep(5)
            crashed = daemon.poll() is not None
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                daemon.kill()
        smtp.controller.stop()
        farm.server.shutdown()

        items = db_rows(db, "SELECT COUNT(*) FROM item")[0][0]
        outbox = db_rows(db, "SELECT message_id, status FROM outbox")
        by_status = Counter(status for _mid, status in outbox)
        expected = {mid.strip() for mid, status in outbox if status not in ("skipped",)}
        received = {mid for mid in smtp.received}
        lost = sorted(expected - received)
        doubled = sorted(mid for mid, count in smtp.received.items() if count > 1)
        source_errors = db_rows(db, "SELECT COUNT(*) FROM source WHERE failures > 0")[0][0]
        log_text = log_path.read_text(encoding="utf-8", errors="replace")
        tracebacks = log_text.count("Traceback")
        first = log_text.find("Traceback")
        if first >= 0:
            print("first traceback in the daemon's log:\n" + "\n".join(log_text[first:].splitlines()[:40]))
        errors = sum(1 for line in log_text.splitlines() if " ERROR " in line or "Traceback" in line)
    growth = (rss_end - rss_start) / rss_start * 100 if rss_start else 0.0
    print(f"minutes: {args.minutes}  feeds: {args.feeds}  subscribers: {args.subscribers}  fail rate: {args.fail_rate}")
    print(f"items stored: {items}")
    print(f"outbox rows by status: {dict(by_status)}")
    print(
        f"mails expected: {len(expected)}  accepted by the server: {sum(smtp.received.values())} "
        f"(distinct {len(received)})  refused 421: {smtp.refused}  connections dropped: {smtp.dropped}"
    )
    print(f"lost: {len(lost)} {lost[:3]}  doubled: {len(doubled)} {doubled[:3]}")
    print(f"daemon crashed: {crashed}  tracebacks in its log: {tracebacks}  sources with failures: {source_errors}")
    print(f"memory: {rss_start:.1f} MB after warm-up, {rss_end:.1f} MB at the end ({growth:+.1f}%)")
    print(
        f"items={items} mails_sent={len(received)} mails_expected={len(expected)} lost={len(lost)} "
        f"doubled={len(doubled)} errors={errors} rss_start_mb={rss_start:.1f} rss_end_mb={rss_end:.1f} "
        f"growth_pct={growth:.1f}"
    )
    return 0 if not lost and not doubled and not crashed else 1


if __name__ == "__main__":
    sys.exit(main())
