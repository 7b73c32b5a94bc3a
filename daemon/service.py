"""Wiring: settings + operator files + database -> the pipeline, digest and sender objects.

Everything is loaded and checked before the daemon does any work, so a bad rule, watchlist or
sources file stops `keynews run` at start with a located message instead of half-running.
Rule reloads are swap-on-success: a bad edit is logged and the previous rule set keeps running.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from daemon.config import Settings
from daemon.errors import RuleLoadError
from daemon.ingest.tickers import load_watchlist
from daemon.models import SourceSpec, Watchlist
from daemon.rules import RuleSet, load_rules
from daemon.rules.loader import rule_files
from daemon.sources import load_sources, parse_duration
from daemon.store.db import make_engine, upgrade
from daemon.store.repo import Repo

log = logging.getLogger("keynews")


def rules_fingerprint(rules_dir: Path) -> str:
    """Changes whenever a rule file is added, removed or edited (content, not mtime)."""
    h = hashlib.sha256()
    for path in rule_files(rules_dir):
        h.update(str(path).encode())
        try:
            h.update(path.read_bytes())
        except OSError:
            continue
    return h.hexdigest()


@dataclass
class App:
    settings: Settings
    engine: Engine
    repo: Repo
    watchlist: Watchlist
    specs: list[SourceSpec]
    rules: RuleSet
    rules_fingerprint: str = ""
    reload_errors: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, settings: Settings, *, migrate: bool = True) -> App:
        """Load operator files, then the database. Raises ConfigError / RuleLoadError untouched."""
        rules_dir = settings.rules_dir
        rules = load_rules(rules_dir)
        watchlist = load_watchlist(rules_dir / "watchlist.yaml")
        sources_file = rules_dir / "sources.yaml"
        max_age = parse_duration(settings.max_age, where="setting max_age: ")
        specs = load_sources(sources_file, watchlist, default_max_age=max_age) if sources_file.exists() else []
        engine = make_engine(settings.database_url)
        if migrate:
            upgrade(engine)
        repo = Repo(engine)
        return cls(settings, engine, repo, watchlist, specs, rules, rules_fingerprint(rules_dir))

    def reload_rules(self, *, force: bool = False) -> bool:
        """Swap in the edited rule set if it loads cleanly; returns True when rules changed."""
        fp = rules_fingerprint(self.settings.rules_dir)
        if fp == self.rules_fingerprint and not force:
            return False
        try:
            new = load_rules(self.settings.rules_dir)
        except RuleLoadError as exc:
            self.reload_errors = [str(e) for e in exc.errors]
            self.rules_fingerprint = fp  # do not re-log the same bad edit every few seconds
            for line in self.reload_errors:
                log.error("rules not reloaded: %s", line)
            log.error("keeping the previous rule set (%d rules)", len(self.rules))
            return False
        self.rules = new
        self.rules_fingerprint = fp
        self.reload_errors = []
        log.info("rules reloaded: %d rules, version %s", len(new), new.version[:12])
        return True

    def close(self) -> None:
        self.engine.dispose()
