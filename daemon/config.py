"""Settings: KEYNEWS_* environment variables over an optional keynews.yaml over defaults.

A Settings value is built once at start and passed down; nothing reads the environment later,
so tests can run several differently-configured daemons in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from daemon.errors import ConfigError


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///keynews.db"
    rules_dir: Path = Path("rules")
    templates_dir: Path | None = None  # operator overrides; bundled templates/ always behind
    outbox_dir: Path = Path("outbox")
    outbox_format: str = "eml"  # eml | maildir
    smtp_host: str = ""
    smtp_port: int = 0  # 0: 465 with smtp_ssl, else 587 with starttls, else 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_timeout: float = 30.0
    smtp_connections: int = 2  # SMTP sessions a digest run sends over at once (1: strictly one)
    mail_from: str = "keynews <keynews@localhost>"
    list_id: str = "keynews.localhost"
    unsubscribe_mailto: str = ""
    base_url: str = "http://127.0.0.1:8025"
    secret_key: str = ""  # signs unsubscribe tokens; generated into the database when empty
    dkim_selector: str = ""
    dkim_domain: str = ""
    dkim_key_file: str = ""
    user_agent: str = "keynews/0.1 (operator contact: set KEYNEWS_USER_AGENT)"
    fetch_timeout: float = 20.0
    fetch_max_bytes: int = 5 * 1024 * 1024
    fetch_max_redirects: int = 5
    fetch_concurrency: int = 16
    per_host_concurrency: int = 4
    sec_rate_per_s: float = 10.0
    max_items_per_ticker: int = 8
    max_age: str = "72h"  # default of each source's max_age: older stories first seen are backlog
    send_batch: int = 50
    outbox_keep_days: int = 30  # mail bytes of sent/failed rows are dropped after this (0: keep)
    send_lease_s: float = 300.0  # a row claimed by a sender that died is sent again after this
    tick_seconds: int = 30
    rules_reload_s: int = 5  # how often rule files are checked for edits (SIGHUP reloads at once)
    web_host: str = "127.0.0.1"
    web_port: int = 8025
    operator_token: str = ""  # bearer token for /metrics from off this machine ("" : loopback only)
    web_trusted_proxies: str = "127.0.0.1,::1"  # whose X-Forwarded-For names the client (rate limits)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _coerce(name: str, target: Any, raw: Any) -> Any:
    kind = type(target)
    try:
        if isinstance(target, bool):
            if isinstance(raw, bool):
                return raw
            return str(raw).strip().lower() in ("1", "true", "yes", "on")
        if isinstance(target, int):
            return int(raw)
        if isinstance(target, float):
            return float(raw)
        if isinstance(target, Path) or name == "templates_dir":
            return Path(str(raw)) if raw not in (None, "") else None
        return str(raw) if kind is str or target is None else raw
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name}: cannot use {raw!r} ({exc})") from exc


def load_settings(config_file: Path | None = None, env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    base = Settings()
    values: dict[str, Any] = {}
    path = config_file or Path(env.get("KEYNEWS_CONFIG", "keynews.yaml"))
    if path.exists():
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of settings")
        known = {f.name for f in fields(Settings)}
        for key, raw in data.items():
            if key not in known:
                raise ConfigError(f"{path}: unknown setting {key!r}")
            values[key] = _coerce(key, getattr(base, key), raw)
    for f in fields(Settings):
        raw_env = env.get(f"KEYNEWS_{f.name.upper()}")
        if raw_env is not None:
            values[f.name] = _coerce(f.name, getattr(base, f.name), raw_env)
    return replace(base, **values)
