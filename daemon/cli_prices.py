"""`keynews prices …`: offline price tools (backtest rules over a Stooq bulk file)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from daemon.errors import RuleLoadError
from daemon.prices.backtest import backtest as run_backtest
from daemon.prices.providers import ProviderError, read_stooq_bulk

prices_app = typer.Typer(help="Price data tools.", no_args_is_help=True, add_completion=False)


@prices_app.callback()
def _group() -> None:
    """Price data tools (keeps `backtest` a subcommand even while it is the only one)."""


@prices_app.command("backtest")
def backtest_cmd(
    file: Path = typer.Argument(..., help="Stooq bulk file (<TICKER>,<PER>,<DATE>,… rows)."),
    rules: Path = typer.Option(..., "--rules", help="Rule YAML file; its price rules are tested."),
) -> None:
    """Print one JSON line per alert the price rules would have raised over the file's history."""
    from daemon.rules import load_rules_text

    try:
        ruleset = load_rules_text(rules.read_text(encoding="utf-8"), str(rules))
    except OSError as e:
        typer.echo(f"error: cannot read {rules}: {e.strerror or e}", err=True)
        raise typer.Exit(2) from None
    except RuleLoadError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
    if not ruleset.price_rules():
        typer.echo(f"warning: {rules} has no price rules", err=True)
    try:
        quotes = read_stooq_bulk(file)
    except ProviderError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    out = sys.stdout
    for row in run_backtest(quotes, ruleset):
        out.write(json.dumps(row, separators=(",", ":")) + "\n")
    out.flush()


if __name__ == "__main__":
    prices_app()
