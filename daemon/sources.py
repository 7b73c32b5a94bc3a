"""rules/sources.yaml -> SourceSpec values, per-ticker templates expanded against the watchlist."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from daemon.errors import ConfigError
from daemon.models import SourceSpec, Watchlist

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_KNOWN_KEYS = {
    "id",
    "kind",
    "url",
    "per_ticker",
    "every",
    "jitter",
    "allow_private",
    "provider",
    "market_hours",
    "label",
    "enabled",
    "max_age",
    "allow_private_redirects",
}


def parse_duration(value: Any, *, where: str = "") -> timedelta:
    if isinstance(value, int | float):
        return timedelta(seconds=float(value))
    m = _DURATION.match(str(value))
    if not m:
        raise ConfigError(f"{where}bad duration {value!r} (use e.g. 30s, 10m, 1h, 1d)")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def _where(path: Path, node: yaml.Node | None) -> str:
    if node is None:
        return f"{path}: "
    return f"{path}:{node.start_mark.line + 1}:{node.start_mark.column + 1}: "


def _find(node: yaml.Node, key: str, *, want_key: bool = False) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return k if want_key else v
    return None


def load_sources(
    path: Path, watchlist: Watchlist, *, default_max_age: timedelta = timedelta(hours=72)
) -> list[SourceSpec]:
    """Read sources.yaml; a per-ticker source becomes one spec per watched ticker that fits it.

    A template that names {cik} skips tickers without a CIK rather than failing: EDGAR has no
    feed for a company that does not file with the SEC.
    """
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        loc = f"{path}:{mark.line + 1}:{mark.column + 1}: " if mark else f"{path}: "
        raise ConfigError(f"{loc}{getattr(exc, 'problem', exc)}") from exc
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'sources' list")
    defaults = data.get("defaults") or {}
    src_nodes = _find(root, "sources") if root is not None else None
    specs: list[SourceSpec] = []
    seen: set[str] = set()
    for index, raw in enumerate(data.get("sources") or []):
        node = src_nodes.value[index] if isinstance(src_nodes, yaml.SequenceNode) else None
        where = _where(path, node)
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}a source must be a mapping")
        unknown = set(raw) - _KNOWN_KEYS
        if unknown:
            bad = sorted(unknown)[0]
            bad_node = _find(node, bad, want_key=True) if node is not None else None
            raise ConfigError(f"{_where(path, bad_node)}unknown key {bad!r} in source")
        if raw.get("enabled", True) is False:
            continue
        sid = str(raw.get("id") or "").strip()
        if not sid:
            raise ConfigError(f"{where}source needs an 'id'")
        if sid in seen:
            raise ConfigError(f"{where}duplicate source id {sid!r}")
        seen.add(sid)
        kind = str(raw.get("kind", "feed"))
        if kind not in ("feed", "prices"):
            raise ConfigError(f"{where}kind must be feed or prices, not {kind!r}")
        every = parse_duration(raw.get("every", defaults.get("every", "10m")), where=where)
        jitter = parse_duration(raw.get("jitter", defaults.get("jitter", "30s")), where=where)
        max_age = raw.get("max_age", defaults.get("max_age"))
        max_age_td = default_max_age if max_age is None else parse_duration(max_age, where=where)
        url = str(raw.get("url") or "")
        if kind == "feed" and not url:
            raise ConfigError(f"{where}feed source {sid!r} needs a url")
        common: dict[str, Any] = {
            "kind": kind,
            "every": every,
            "jitter": jitter,
            "allow_private": bool(raw.get("allow_private", defaults.get("allow_private", False))),
            "provider": raw.get("provider"),
            "market_hours": raw.get("market_hours"),
            "label": str(raw.get("label") or ""),
            "max_age": max_age_td,
            "allow_private_redirects": bool(
                raw.get("allow_private_redirects", defaults.get("allow_private_redirects", False))
            ),
        }
        if raw.get("per_ticker") or kind == "prices":
            for t in watchlist.tickers:
                fields = {"symbol": t.symbol, "cik": t.cik or "", "exchange": t.exchange, "name": t.name}
                if "{cik}" in url and not t.cik:
                    continue
                try:
                    expanded = url.format(**fields) if url else ""
                except (KeyError, IndexError) as exc:
                    raise ConfigError(f"{where}unknown placeholder {exc} in url (use {{symbol}}, {{cik}})") from exc
                specs.append(SourceSpec(id=sid, url=expanded, ticker=t.symbol, **common))
        else:
            specs.append(SourceSpec(id=sid, url=url, **common))
    return specs
