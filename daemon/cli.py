"""`keynews …`: the operator's command line.

Exit codes are a contract: 0 ok, 1 runtime failure, 2 bad operator input (rules, watchlist,
sources, settings), so scripts and CI can tell "fix your YAML" from "try again".
"""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from daemon.cli_prices import prices_app
from daemon.cli_rules import rules_app
from daemon.config import Settings, load_settings
from daemon.errors import ConfigError, KeynewsError, RuleLoadError
from daemon.models import FREQUENCIES
from daemon.store.repo import utcnow

app = typer.Typer(help="keynews: key news on the companies you follow, as email digests.", no_args_is_help=True)
subscribers_app = typer.Typer(help="Manage subscribers.", no_args_is_help=True)
digest_app = typer.Typer(help="Build, preview and send digests.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
sources_app = typer.Typer(help="Polled sources and their health.", no_args_is_help=True)
app.add_typer(subscribers_app, name="subscribers")
app.add_typer(digest_app, name="digest")
app.add_typer(db_app, name="db")
app.add_typer(sources_app, name="sources")
app.add_typer(rules_app, name="rules")
app.add_typer(prices_app, name="prices")

out = Console()
err = Console(stderr=True)

EXIT_BAD_INPUT = 2


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _load_app(settings: Settings | None = None):  # type: ignore[no-untyped-def]
    from daemon.service import App

    settings = settings or _settings()
    try:
        return App.load(settings)
    except RuleLoadError as exc:
        for e in exc.errors:
            print(str(e), file=sys.stderr)
        print(f"{len(exc.errors)} rule error(s): nothing loaded", file=sys.stderr)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except (ConfigError, FileNotFoundError) as exc:
        print(str(exc), file=sys.stderr)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def run(
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the daemon: poll due sources, send due digests, until stopped (Ctrl-C / SIGTERM)."""
    _logging(verbose)
    application = _load_app()
    from daemon.schedule import run_forever

    asyncio.run(run_forever(application))


@app.command()
def poll(
    once: Annotated[bool, typer.Option("--once", help="Poll once and exit (the only mode for now).")] = True,
    all_sources: Annotated[bool, typer.Option("--all", help="Poll every source, due or not.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Poll every due source once and print what was stored and matched."""
    application = _load_app()
    from daemon.ingest.pipeline import Pipeline, report_json

    now = utcnow()
    pipeline = Pipeline(application.settings, application.repo, application.watchlist, application.specs)
    pipeline.sync(now)
    report = asyncio.run(pipeline.poll_due(now, application.rules, force=all_sources))
    if as_json:
        print(report_json(report))
        return
    for src in report.sources:
        state = "304 not modified" if src.not_modified else f"HTTP {src.status}"
        line = f"{src.key}: {state}, {src.fetched} entries, {len(src.new_items)} new"
        if src.error:
            line += f" — ERROR: {src.error}"
        print(line)
        for item, matches in src.new_items:
            if matches:
                rules = ", ".join(sorted({m.rule_id for m in matches}))
                tick = ",".join(item.tickers) or "-"
                print(f"  [{tick}] {item.title}  <- {rules}")
    print(
        f"polled {len(report.sources)} sources: {report.new_items} new items, {report.matches} matches, "
        f"{len(report.errors)} errors"
    )


@subscribers_app.command("add")
def subscribers_add(
    email: str,
    tickers: Annotated[str, typer.Option(help="Comma-separated symbols, e.g. KC,AAPL")],
    frequency: Annotated[str, typer.Option(help="daily | weekly | immediate")] = "daily",
    tz: Annotated[str, typer.Option(help="IANA time zone, e.g. Europe/Paris")] = "UTC",
    send_time: Annotated[str, typer.Option(help="Local HH:MM for daily/weekly digests")] = "07:00",
    categories: Annotated[str, typer.Option(help="Comma-separated categories (default: all)")] = "",
    min_severity: Annotated[str, typer.Option(help="low | medium | high | critical")] = "low",
    quiet: Annotated[str, typer.Option(help="Quiet hours HH:MM-HH:MM, e.g. 22:00-07:00")] = "",
    nothing_new: Annotated[str, typer.Option(help="skip | note: what to send when nothing is new")] = "skip",
) -> None:
    """Add a subscriber (or update one), active at once."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from daemon.models import CATEGORIES, Severity

    if frequency not in FREQUENCIES:
        err.print(f"frequency must be one of {', '.join(FREQUENCIES)}")
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        err.print(f"unknown time zone {tz!r}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    cats = [c.strip() for c in categories.split(",") if c.strip()]
    bad = [c for c in cats if c not in CATEGORIES]
    if bad:
        err.print(f"unknown categories {bad}; known: {', '.join(CATEGORIES)}")
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        sev = int(Severity.parse(min_severity))
    except KeyError:
        err.print("min-severity must be low, medium, high or critical")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    q_start, q_end = [*quiet.split("-", 1), ""][:2] if quiet else (None, None)
    application = _load_app()
    symbols = [t.strip().upper() for t in tickers.split(",") if t.strip()]
    unknown = [s for s in symbols if application.watchlist.get(s) is None]
    if unknown:
        err.print(f"[yellow]note: not on the watchlist (no news will come for them): {', '.join(unknown)}[/yellow]")
    application.repo.add_subscriber(
        email,
        symbols,
        now=utcnow(),
        frequency=frequency,
        tz=tz,
        send_time=send_time,
        categories=cats,
        min_severity=sev,
        quiet_start=q_start or None,
        quiet_end=q_end or None,
        nothing_new=nothing_new,
    )
    print(f"subscribed {email.strip().lower()} to {', '.join(symbols)} ({frequency})")


@subscribers_app.command("list")
def subscribers_list() -> None:
    """List subscribers with their tickers and preferences."""
    application = _load_app()
    table = Table("email", "status", "frequency", "tz", "send", "tickers")
    for s in application.repo.subscribers():
        table.add_row(s.email, s.status, s.frequency, s.tz, s.send_time, ",".join(sorted(s.tickers)))
    out.print(table)


@subscribers_app.command("remove")
def subscribers_remove(email: str) -> None:
    """Remove a subscriber and everything queued for them."""
    application = _load_app()
    if not application.repo.remove_subscriber(email):
        err.print(f"no subscriber {email}")
        raise typer.Exit(1)
    print(f"removed {email.strip().lower()}")


@digest_app.command("send")
def digest_send(
    now_flag: Annotated[bool, typer.Option("--now", help="Close every subscriber's window now, due or not.")] = False,
) -> None:
    """Build and deliver digests: due ones, or every subscriber's with --now."""
    application = _load_app()
    from daemon.mail.digest import DigestService
    from daemon.mail.send import Sender, close_and_send

    now = utcnow()
    service = DigestService(application.settings, application.repo, application.watchlist)
    window = f"manual:{now.strftime('%Y%m%dT%H%M%S')}" if now_flag else None
    # mail goes out while later digests are still being rendered
    closed, report = close_and_send(
        lambda: service.close_due(now, force_window=window), Sender(application.settings, application.repo)
    )
    print(
        f"queued {closed.queued} digests and {closed.alerts} alerts ({closed.skipped} with nothing new); "
        f"sent {report.sent}, retrying {report.retried}, failed {report.failed}"
    )
    for line in report.errors[:20]:
        print(f"  {line}", file=sys.stderr)
    if report.retried or report.failed:
        raise typer.Exit(1)


@digest_app.command("preview")
def digest_preview(
    subscriber: Annotated[str, typer.Option("--subscriber", help="Subscriber email")],
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the HTML here")] = None,
) -> None:
    """Render what this subscriber would get now, without sending or closing anything."""
    application = _load_app()
    from daemon.mail.digest import DigestService

    subs = application.repo.subscribers(email=subscriber)
    if not subs:
        err.print(f"no subscriber {subscriber}")
        raise typer.Exit(1)
    now = utcnow()
    service = DigestService(application.settings, application.repo, application.watchlist)
    matches = service.builder.pending(subs[0], now, "digest")
    _built, rendered = service.render(subs[0], matches, kind="digest", window_key="preview", now=now)
    if out_file:
        out_file.write_text(rendered.html, encoding="utf-8")
        print(f"subject: {rendered.subject}\nwrote {out_file} ({len(matches)} matches)")
    else:
        print(f"Subject: {rendered.subject}\n\n{rendered.text}")


@app.command()
def send() -> None:
    """Send whatever is queued in the outbox now (retries included)."""
    application = _load_app()
    from daemon.mail.send import Sender

    report = Sender(application.settings, application.repo).send_due()
    print(f"sent {report.sent}, retrying {report.retried}, failed {report.failed}")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations (also done automatically at start)."""
    from daemon.store.db import current_revision, make_engine, upgrade

    settings = _settings()
    engine = make_engine(settings.database_url)
    upgrade(engine)
    print(f"database at revision {current_revision(engine)}")


@db_app.command("prune")
def db_prune(
    days: Annotated[
        int | None, typer.Option(help="Keep mail bytes this many days (default: KEYNEWS_OUTBOX_KEEP_DAYS)")
    ] = None,
) -> None:
    """Drop the stored bytes of mail sent or given up on before then (the daemon does it every 6 h)."""
    from datetime import timedelta

    from daemon.store.repo import utcnow

    application = _load_app()
    keep = application.settings.outbox_keep_days if days is None else days
    if keep <= 0:
        print("outbox: keeping everything (keep days is 0)")
        return
    dropped = application.repo.prune_outbox(utcnow() - timedelta(days=keep))
    print(f"outbox: dropped the mail bytes of {dropped} rows older than {keep} days")


@sources_app.command("list")
def sources_list() -> None:
    """Every source with its last status, failures and next poll."""
    application = _load_app()
    from daemon.ingest.pipeline import Pipeline

    Pipeline(application.settings, application.repo, application.watchlist, application.specs).sync(utcnow())
    table = Table("source", "last status", "failures", "next due (UTC)", "items", "last error")
    for s in application.repo.list_sources():
        table.add_row(
            s.id,
            str(s.last_status or "-"),
            str(s.failures),
            s.next_due_at.strftime("%Y-%m-%d %H:%M"),
            str(s.items_total),
            (s.last_error or "")[:60],
        )
    out.print(table)


@rules_app.command("backtest")
def rules_backtest(
    since: Annotated[str, typer.Option(help="How far back, e.g. 30d, 12h")] = "30d",
    show: Annotated[int, typer.Option(help="Items to show per rule")] = 5,
) -> None:
    """Run the current rules over stored items: hits per rule, and the items each would have sent."""
    from daemon.rules import parse_duration

    application = _load_app()
    try:
        window = parse_duration(since)
    except (ValueError, KeyError):
        err.print(f"bad duration {since!r}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    assert isinstance(window, timedelta)
    items = application.repo.items_since(utcnow() - window)
    hits: dict[str, list[str]] = {r.id: [] for r in application.rules.rules if not r.is_price}
    for item in items:
        for rule_id in dict.fromkeys(m.rule_id for m in application.rules.match_item(item)):
            hits.setdefault(rule_id, []).append(f"[{','.join(item.tickers) or '-'}] {item.title}")
    print(f"{len(items)} items stored in the last {since}")
    for rule_id, titles in sorted(hits.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        print(f"{len(titles):6d}  {rule_id}")
        for t in titles[:show]:
            print(f"        {t}")


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Where the digest .eml is written")] = Path("outbox"),
) -> None:
    """Offline demo: serve bundled real feeds on 127.0.0.1, poll, match, and write a digest .eml."""
    from daemon.demo import run_demo

    settings = _settings()
    try:
        path = run_demo(settings, out_dir)
    except RuleLoadError as exc:
        for e in exc.errors:
            print(str(e), file=sys.stderr)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    print(path)


@app.command()
def web(
    host: Annotated[str | None, typer.Option(help="Listen address (default: KEYNEWS_WEB_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: KEYNEWS_WEB_PORT)")] = None,
) -> None:
    """Serve only the subscriber pages (unsubscribe, preferences, /healthz); `run` serves them too."""
    application = _load_app()
    from daemon.web.app import WebApp, serve

    server, thread = serve(
        WebApp(application.settings, application.repo, application.watchlist),
        host or application.settings.web_host,
        port if port is not None else application.settings.web_port,
    )
    print(f"serving on http://{host or application.settings.web_host}:{server.server_port}")
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="The operator folder to start (default: here)")] = Path("."),
) -> None:
    """Start an operator folder: the default watchlist, sources and rule packs in DIR/rules.

    Files already there are kept, so running it again never undoes an operator's edits.
    """
    import shutil

    from daemon.bundled import bundled_dir

    source = bundled_dir("rules")
    target = directory / "rules"
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.yaml")):
        dest = target / path.name
        if dest.exists():
            print(f"kept    {dest}")
        else:
            shutil.copyfile(path, dest)
            print(f"wrote   {dest}")
    print(f"next: edit {target / 'watchlist.yaml'}, then `keynews rules check` and `keynews run`")


@app.command()
def version() -> None:
    """Print the version."""
    from daemon import __version__

    print(__version__)


def main() -> None:
    try:
        app()
    except KeynewsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
