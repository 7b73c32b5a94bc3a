"""`keynews rules …`: check rule packs and try them on sample text, without a database.

Kept apart from daemon/cli.py so the rule tooling can be used (and tested) on its own:
`python -m daemon.cli_rules check rules/`.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from daemon.errors import RuleLoadError
from daemon.models import Item
from daemon.rules import RuleSet, load_rules
from daemon.rules.loader import rule_files

rules_app = typer.Typer(help="Check rule packs and test them on sample text.", no_args_is_help=True)

EXIT_RULE_ERRORS = 2


def default_rules_dir() -> Path:
    return Path(os.environ.get("KEYNEWS_RULES_DIR") or "rules")


def _load_or_exit(paths: list[Path]) -> RuleSet:
    try:
        return load_rules(paths)
    except RuleLoadError as e:
        for err in e.errors:
            print(str(err), file=sys.stderr)
        print(f"{len(e.errors)} error(s); rules not loaded", file=sys.stderr)
        raise typer.Exit(EXIT_RULE_ERRORS) from None


@rules_app.command("check")
def check(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Rule files or directories (default: ./rules or $KEYNEWS_RULES_DIR)")
    ] = None,
) -> None:
    """Load rule packs; print `OK: N rules in M files` or every error as path:line:col: message."""
    targets = list(paths) if paths else [default_rules_dir()]
    missing = [p for p in targets if not p.exists()]
    for p in missing:
        print(f"{p}:1:1: no such file or directory", file=sys.stderr)
    if missing:
        raise typer.Exit(EXIT_RULE_ERRORS)
    rs = _load_or_exit(targets)
    n_files = len(rule_files(targets))
    print(f"OK: {len(rs)} rules in {n_files} files")


@rules_app.command("test")
def test(
    input: Annotated[Path, typer.Option("--input", "-i", help="JSON lines: {id, title, body}")],
    explain: Annotated[bool, typer.Option("--explain", help="Add why each rule matched")] = False,
    rules: Annotated[Path | None, typer.Option("--rules", help="Rule file or directory")] = None,
) -> None:
    """Match each input line; print one JSON line {id, categories, rules[, explain]} per input.

    Input items carry no tickers, so every rule is treated as in scope (a rule limited to
    some tickers still tests its condition).
    """
    target = rules or default_rules_dir()
    if not target.exists():
        print(f"{target}:1:1: no such file or directory", file=sys.stderr)
        raise typer.Exit(EXIT_RULE_ERRORS)
    rs = _load_or_exit([target])
    now = datetime.now(UTC)
    out = sys.stdout
    try:
        fh = input.open(encoding="utf-8")
    except OSError as e:
        print(f"{input}: {e.strerror or e}", file=sys.stderr)
        raise typer.Exit(1) from None
    with fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
                if not isinstance(doc, dict):
                    raise ValueError("not a JSON object")
            except ValueError as e:
                print(f"{input}:{lineno}: bad JSON line: {e}", file=sys.stderr)
                raise typer.Exit(1) from None
            doc_id = doc.get("id", lineno)
            item = Item(
                uid=str(doc_id),
                source_id="input",
                url=str(doc.get("url") or ""),
                title=str(doc.get("title") or ""),
                summary=str(doc.get("body") or ""),
                published_at=now,
            )
            matches = rs.match_item(item, ignore_scope=True, explain=explain)
            rule_ids = list(dict.fromkeys(m.rule_id for m in matches))
            cats = list(dict.fromkeys(m.category for m in matches))
            rec: dict[str, object] = {"id": doc_id, "categories": cats, "rules": rule_ids}
            if explain:
                rec["explain"] = [e.as_dict() for m in matches for e in m.explanations]
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    rules_app()
