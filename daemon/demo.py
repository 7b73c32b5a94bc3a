"""`keynews demo`: the whole path, offline, in a few seconds.

It serves the bundled real feed captures on 127.0.0.1, polls them through the same pipeline the
daemon uses, checks them against the operator's rules, and writes one digest .eml. It uses its
own temporary database and watchlist, so it neither needs nor touches the operator's setup.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from dataclasses import replace
from datetime import timedelta
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from daemon.config import Settings
from daemon.ingest.pipeline import Pipeline, bundled_samples_dir
from daemon.mail.deliver import FileTransport, message_file_stem
from daemon.mail.digest import DigestService
from daemon.mail.send import Sender
from daemon.models import SourceSpec, Ticker, Watchlist
from daemon.rules import load_rules
from daemon.store.db import make_engine, upgrade
from daemon.store.repo import Repo, utcnow

DEMO_WATCHLIST = Watchlist(
    tickers=(
        Ticker("MSFT", "Microsoft Corporation", "NASDAQ", ("Microsoft",), "0000789019"),
        Ticker("AAPL", "Apple Inc.", "NASDAQ", ("Apple",), "0000320193"),
        Ticker("KVAC", "Keen Vision Acquisition Corp.", "NASDAQ", ("Keen Vision",), "0001889983"),
        Ticker("FDX", "FedEx Corporation", "NYSE", ("FedEx",), "0001048911"),
        Ticker("GOOGL", "Alphabet Inc.", "NASDAQ", ("Alphabet", "Google"), "0001652044"),
    )
)

DEMO_FEEDS = (
    ("seekingalpha-msft", "Seeking Alpha", "feeds/seekingalpha_msft_2017-10.xml", None),
    ("reuters-business", "Reuters", "feeds/reuters_businessnews_feedburner_2019-01.xml", None),
    ("edgar", "SEC EDGAR", "feeds/edgarkit_company_atom_keenvision_cik1889983.xml", "KVAC"),
    ("sec-press", "SEC press releases", "feeds/edgarkit_sec_pressreleases.rss", None),
)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


def serve_samples(root: Path) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run_demo(settings: Settings, out_dir: Path, *, email: str = "demo@example.com") -> Path:
    """Returns the path of the digest written."""
    rules = load_rules(settings.rules_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    server = serve_samples(bundled_samples_dir())
    try:
        with tempfile.TemporaryDirectory(prefix="keynews-demo-") as tmp:
            demo_settings = replace(
                settings,
                database_url=f"sqlite:///{Path(tmp) / 'demo.db'}",
                outbox_dir=out_dir,
                smtp_host="",
                outbox_format="eml",
            )
            engine = make_engine(demo_settings.database_url)
            upgrade(engine)
            repo = Repo(engine)
            port = server.server_address[1]
            specs = [
                SourceSpec(
                    id=sid,
                    url=f"http://127.0.0.1:{port}/{path}",
                    label=label,
                    allow_private=True,
                    ticker=ticker,
                    jitter=timedelta(0),
                )
                for sid, label, path, ticker in DEMO_FEEDS
            ]
            prices_file = bundled_samples_dir() / "prices" / "aapl.us.txt"
            specs.append(
                SourceSpec(
                    id="prices",
                    kind="prices",
                    provider="csv",
                    url=prices_file.resolve().as_uri(),
                    ticker="AAPL",
                    label="Stooq history",
                    market_hours="XNYS",
                    jitter=timedelta(0),
                )
            )
            now = utcnow()
            pipeline = Pipeline(demo_settings, repo, DEMO_WATCHLIST, specs)
            pipeline.sync(now)
            report = asyncio.run(pipeline.poll_due(now, rules))
            for src in report.sources:
                state = src.error or f"{len(src.new_items)} new items"
                print(f"polled {src.key}: {state}")
            repo.add_subscriber(email, DEMO_WATCHLIST.symbols(), now=now, frequency="daily", nothing_new="note")
            service = DigestService(demo_settings, repo, DEMO_WATCHLIST)
            service.close_due(now, force_window=f"demo:{now.strftime('%Y%m%dT%H%M%S')}")
            transport = FileTransport(out_dir)
            sender = Sender(demo_settings, repo, transport_factory=lambda: transport)
            sent = sender.send_due()
            rows = repo.outbox_rows(status="sent")
            engine.dispose()
            if not rows or sent.sent == 0:
                raise RuntimeError(f"demo digest was not written: {sent.errors}")
            print(f"{report.new_items} items stored, {report.matches} matches; digest subject: {rows[-1].subject}")
            return out_dir / f"{message_file_stem(rows[-1].raw)}.eml"
    finally:
        server.shutdown()
        server.server_close()
