"""YAML rule files -> Rule objects, all-or-nothing, every error located as path:line:col.

Works on PyYAML's composed node tree rather than loaded Python values so every key and value
still carries its position, and so scalars are read as written (`items: [5.10]` stays "5.10",
a phrase `yes` stays "yes").
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import re2
import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from daemon.errors import RuleError, RuleLoadError
from daemon.models import CATEGORIES, Severity

from . import conditions as c
from .rule import Rule, parse_duration
from .textnorm import collapse, normalize_phrase

RULE_KEYS: tuple[str, ...] = (
    "id",
    "title",
    "description",
    "category",
    "severity",
    "tickers",
    "cooldown",
    "when",
    "unless",
    "enabled",
)
TOP_KEYS: tuple[str, ...] = ("rules",)
TEXT_MATCHERS: tuple[str, ...] = ("phrases", "all_words", "regex")
URL_MATCHERS: tuple[str, ...] = ("phrases", "regex", "in")
FILING_KEYS: tuple[str, ...] = ("form", "items")
SEVERITIES: tuple[str, ...] = tuple(s.label for s in Severity)
EXCLUDED_FILES: frozenset[str] = frozenset({"watchlist.yaml", "watchlist.yml", "sources.yaml", "sources.yml"})

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_TICKER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-^=:]*$")
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_NULL_TAG = "tag:yaml.org,2002:null"
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_CONSTRUCTOR = yaml.constructor.SafeConstructor()


def re2_options() -> re2.Options:
    return _RE2_OPTIONS


def regex_for_matching(pattern: str) -> str:
    """Operator regexes are case-insensitive by default; `(?-i)` inside turns that off."""
    return "(?i)" + pattern


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


@dataclass
class Source:
    """One rule file's text, named as errors should name it."""

    path: str
    text: str


@dataclass
class _Ctx:
    path: str
    errors: list[RuleError] = field(default_factory=list)
    kinds: set[str] = field(default_factory=set)  # fields used in the current rule

    def err(self, node: Node, message: str) -> None:
        m = node.start_mark
        self.errors.append(RuleError(self.path, m.line + 1, m.column + 1, message))


def _pairs(ctx: _Ctx, node: MappingNode) -> list[tuple[str, ScalarNode, Node]]:
    """Mapping entries with string keys; duplicate and non-scalar keys are errors."""
    out: list[tuple[str, ScalarNode, Node]] = []
    seen: set[str] = set()
    for k, v in node.value:
        if not isinstance(k, ScalarNode):
            ctx.err(k, "a key must be a plain name")
            continue
        if k.value in seen:
            ctx.err(k, f"duplicate key '{k.value}'")
            continue
        seen.add(k.value)
        out.append((k.value, k, v))
    return out


def _scalar_str(ctx: _Ctx, node: Node, what: str) -> str | None:
    if not isinstance(node, ScalarNode) or node.tag == _NULL_TAG:
        ctx.err(node, f"{what} must be a string")
        return None
    return str(node.value)


def _str_list(ctx: _Ctx, node: Node, what: str, *, allow_empty: bool = False) -> list[str] | None:
    """A string or a list of strings (a single string is a list of one)."""
    if isinstance(node, ScalarNode) and node.tag != _NULL_TAG:
        items: list[Node] = [node]
    elif isinstance(node, SequenceNode):
        items = list(node.value)
    else:
        ctx.err(node, f"{what} must be a string or a list of strings")
        return None
    out: list[str] = []
    ok = True
    for n in items:
        s = _scalar_str(ctx, n, f"each of {what}")
        if s is None:
            ok = False
        elif not s.strip():
            ctx.err(n, f"empty string in {what}")
            ok = False
        else:
            out.append(s)
    if not out and ok and not allow_empty:
        ctx.err(node, f"{what} must not be empty")
        return None
    return out if ok else None


def _number(ctx: _Ctx, node: Node, what: str) -> float | None:
    if isinstance(node, ScalarNode) and node.tag in (_INT_TAG, _FLOAT_TAG):
        if node.tag == _INT_TAG:
            return float(_CONSTRUCTOR.construct_yaml_int(node))
        return float(_CONSTRUCTOR.construct_yaml_float(node))
    ctx.err(node, f"{what} must be a number")
    return None


def _unknown(ctx: _Ctx, key_node: ScalarNode, key: str, allowed: Sequence[str], where: str) -> None:
    ctx.err(
        key_node,
        f"unknown {where} '{key}'{did_you_mean(key, allowed)}; expected one of: {', '.join(allowed)}",
    )


# ---------------------------------------------------------------- conditions


def _condition(ctx: _Ctx, node: Node) -> c.Node | None:
    """A condition mapping: its keys (fields and combinators) must all hold."""
    if not isinstance(node, MappingNode):
        ctx.err(node, "a condition must be a mapping, e.g. `headline: {phrases: [...]}` or `any: [...]`")
        return None
    parts: list[c.Node] = []
    ok = True
    pairs = _pairs(ctx, node)
    if not pairs:
        ctx.err(node, "empty condition")
        return None
    for key, knode, vnode in pairs:
        part: c.Node | None
        if key in ("all", "any"):
            part = _combinator(ctx, key, vnode)
        elif key == "not":
            inner = _condition(ctx, vnode)
            part = c.Not(inner) if inner is not None else None
        elif key in c.FIELDS:
            ctx.kinds.add(key)
            part = _field(ctx, key, knode, vnode)
        else:
            _unknown(ctx, knode, key, (*c.FIELDS, *c.COMBINATORS), "field")
            part = None
        if part is None:
            ok = False
        else:
            parts.append(part)
    if not ok:
        return None
    return parts[0] if len(parts) == 1 else c.All(tuple(parts))


def _combinator(ctx: _Ctx, key: str, node: Node) -> c.Node | None:
    if not isinstance(node, SequenceNode) or not node.value:
        ctx.err(node, f"`{key}` takes a non-empty list of conditions")
        return None
    children = [_condition(ctx, n) for n in node.value]
    if any(ch is None for ch in children):
        return None
    kids = tuple(ch for ch in children if ch is not None)
    return c.All(kids) if key == "all" else c.Any_(kids)


def _field(ctx: _Ctx, name: str, knode: ScalarNode, node: Node) -> c.Node | None:
    if not isinstance(node, MappingNode):
        ctx.err(node, f"`{name}` takes a mapping of matchers, e.g. `{name}: {_example(name)}`")
        return None
    pairs = _pairs(ctx, node)
    if not pairs:
        ctx.err(node, f"`{name}` needs at least one matcher, e.g. `{name}: {_example(name)}`")
        return None
    if name == "price":
        return _price(ctx, pairs, node)
    if name == "filing":
        return _filing(ctx, pairs)
    if name in c.TEXT_FIELDS:
        allowed: tuple[str, ...] = TEXT_MATCHERS
    elif name == "url":
        allowed = URL_MATCHERS
    else:  # source, tickers
        allowed = ("in",)
    parts: list[c.Node] = []
    ok = True
    for key, kn, vn in pairs:
        if key not in allowed:
            _unknown(ctx, kn, key, allowed, f"matcher for `{name}`")
            ok = False
            continue
        part = _matcher(ctx, name, key, vn)
        if part is None:
            ok = False
        else:
            parts.append(part)
    if not ok:
        return None
    return parts[0] if len(parts) == 1 else c.All(tuple(parts))


def _example(name: str) -> str:
    return {
        "price": "{change_pct: {abs_gte: 5}, window: 1d}",
        "filing": '{form: ["8-K"], items: ["2.02"]}',
        "source": "{in: [edgar]}",
        "tickers": "{in: [KC]}",
    }.get(name, '{phrases: ["..."]}')


def _matcher(ctx: _Ctx, fname: str, key: str, node: Node) -> c.Node | None:
    if key == "in":
        values = _str_list(ctx, node, f"`{fname}: in`")
        if values is None:
            return None
        if fname == "tickers":
            values = [v.strip().upper() for v in values]
        return c.InSet(fname, frozenset(v.strip() for v in values))
    if key == "regex":
        pats = _str_list(ctx, node, "`regex`")
        if pats is None:
            return None
        items = list(node.value) if isinstance(node, SequenceNode) else [node]
        ok = True
        for p, pn in zip(pats, items, strict=False):
            reason = regex_error(p)
            if reason is not None:
                ctx.err(pn, f"bad regex {p!r}: {reason}")
                ok = False
        return c.Regex(fname, tuple(pats)) if ok else None
    words = _str_list(ctx, node, f"`{key}`")
    if words is None:
        return None
    norm = tuple(dict.fromkeys(normalize_phrase(w) for w in words))
    if key == "all_words":
        split = tuple(dict.fromkeys(w for p in norm for w in p.split(" ")))
        return c.AllWords(fname, split)
    return c.Phrases(fname, norm)


def regex_error(pattern: str) -> str | None:
    """RE2's own reason a pattern cannot be used, or None when it compiles."""
    try:
        re2.compile(regex_for_matching(pattern), _RE2_OPTIONS)
    except re2.error as e:
        raw = e.args[0] if e.args else str(e)
        reason = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        reason = reason.replace(regex_for_matching(pattern), pattern)
        hint = ""
        if "invalid perl operator" in reason or "invalid escape" in reason:
            hint = " (RE2 has no lookaround or backreferences)"
        return f"RE2: {reason}{hint}"
    except Exception as e:  # pragma: no cover - wrapper-specific failures
        return f"RE2: {e}"
    return None


def _filing(ctx: _Ctx, pairs: list[tuple[str, ScalarNode, Node]]) -> c.Node | None:
    forms: list[str] = []
    items: list[str] = []
    ok = True
    for key, kn, vn in pairs:
        if key not in FILING_KEYS:
            _unknown(ctx, kn, key, FILING_KEYS, "key for `filing`")
            ok = False
            continue
        values = _str_list(ctx, vn, f"`filing: {key}`")
        if values is None:
            ok = False
        elif key == "form":
            forms = [normalize_form(v) for v in values]
        else:
            for v, n in zip(values, list(vn.value) if isinstance(vn, SequenceNode) else [vn], strict=False):
                item = normalize_item(v)
                if not re.fullmatch(r"\d+\.\d{2}", item):
                    ctx.err(n, f"8-K item must look like '2.02' (quote it in YAML), got {v!r}")
                    ok = False
                items.append(item)
    if not ok:
        return None
    return c.Filing(tuple(forms), frozenset(items))


def normalize_form(form: str) -> str:
    return collapse(form).upper()


def normalize_item(item: str) -> str:
    s = item.strip().lower().removeprefix("item").strip()
    return s


def _price(ctx: _Ctx, pairs: list[tuple[str, ScalarNode, Node]], node: Node) -> c.Node | None:
    comps: list[c.Compare] = []
    window: str | None = None
    ok = True
    for key, kn, vn in pairs:
        if key == "window":
            w = _scalar_str(ctx, vn, "`window`")
            if w is None or parse_duration(w) is None:
                if w is not None:
                    ctx.err(vn, f"`window` must be a duration like 1d, 5d, 1h, got {w!r}")
                ok = False
            else:
                window = w.strip().lower()
            continue
        if key not in c.PRICE_METRICS:
            _unknown(ctx, kn, key, (*c.PRICE_METRICS, "window"), "price metric")
            ok = False
            continue
        if not isinstance(vn, MappingNode) or not vn.value:
            ctx.err(vn, f"`{key}` takes comparisons, e.g. `{key}: {{abs_gte: 5}}`")
            ok = False
            continue
        for op, on, val in _pairs(ctx, vn):
            if op not in c.COMPARISONS:
                _unknown(ctx, on, op, c.COMPARISONS, "comparison")
                ok = False
                continue
            num = _number(ctx, val, f"`{key}: {op}`")
            if num is None:
                ok = False
            else:
                comps.append(c.Compare(key, op, num))
    if ok and not comps:
        ctx.err(node, "`price` needs at least one metric comparison, e.g. `change_pct: {abs_gte: 5}`")
        return None
    return c.Price(tuple(comps), window) if ok else None


# ---------------------------------------------------------------- rules


def _rule(ctx: _Ctx, node: Node, seen: dict[str, str]) -> Rule | None:
    if not isinstance(node, MappingNode):
        ctx.err(node, "each rule must be a mapping with at least `id`, `category` and `when`")
        return None
    before = len(ctx.errors)
    ctx.kinds = set()
    values: dict[str, tuple[ScalarNode, Node]] = {}
    for key, kn, vn in _pairs(ctx, node):
        if key not in RULE_KEYS:
            _unknown(ctx, kn, key, RULE_KEYS, "rule key")
            continue
        values[key] = (kn, vn)
    for req in ("id", "category", "when"):
        if req not in values:
            ctx.err(node, f"rule is missing `{req}`")

    rule_id = ""
    if "id" in values:
        idn = values["id"][1]
        rid = _scalar_str(ctx, idn, "`id`")
        if rid is not None:
            if not _ID.match(rid):
                ctx.err(idn, f"bad rule id {rid!r}: use letters, digits, '-', '_', '.'")
            elif rid in seen:
                ctx.err(idn, f"duplicate rule id '{rid}' (first defined at {seen[rid]})")
            else:
                m = idn.start_mark
                seen[rid] = f"{ctx.path}:{m.line + 1}:{m.column + 1}"
            rule_id = rid
    title = rule_id
    if "title" in values:
        title = _scalar_str(ctx, values["title"][1], "`title`") or rule_id
    description = ""
    if "description" in values:
        description = _scalar_str(ctx, values["description"][1], "`description`") or ""
    category = "other"
    if "category" in values:
        cn = values["category"][1]
        cat = _scalar_str(ctx, cn, "`category`")
        if cat is not None:
            if cat not in CATEGORIES:
                ctx.err(
                    cn,
                    f"unknown category '{cat}'{did_you_mean(cat, CATEGORIES)}; "
                    f"expected one of: {', '.join(CATEGORIES)}",
                )
            category = cat
    severity = Severity.MEDIUM
    if "severity" in values:
        sn = values["severity"][1]
        sev = _scalar_str(ctx, sn, "`severity`")
        if sev is not None:
            if sev.strip().lower() not in SEVERITIES:
                ctx.err(
                    sn,
                    f"unknown severity '{sev}'{did_you_mean(sev.lower(), SEVERITIES)}; "
                    f"expected one of: {', '.join(SEVERITIES)}",
                )
            else:
                severity = Severity.parse(sev)
    tickers: tuple[str, ...] = ("*",)
    if "tickers" in values:
        tn = values["tickers"][1]
        tl = _str_list(ctx, tn, "`tickers`")
        if tl is not None:
            for t, n in zip(tl, list(tn.value) if isinstance(tn, SequenceNode) else [tn], strict=False):
                if t.strip() != "*" and not _TICKER.match(t.strip()):
                    ctx.err(n, f"bad ticker {t!r} in `tickers` (a symbol like KC or '*')")
            tickers = tuple(dict.fromkeys(t.strip() if t.strip() == "*" else t.strip().upper() for t in tl))
    cooldown = None
    if "cooldown" in values:
        cdn = values["cooldown"][1]
        cd = _scalar_str(ctx, cdn, "`cooldown`")
        if cd is not None:
            cooldown = parse_duration(cd)
            if cooldown is None:
                ctx.err(cdn, f"`cooldown` must be a duration like 1d, 6h, 30m, got {cd!r}")
    enabled = True
    if "enabled" in values:
        en = values["enabled"][1]
        if isinstance(en, ScalarNode) and en.tag == _BOOL_TAG:
            enabled = bool(_CONSTRUCTOR.construct_yaml_bool(en))
        else:
            ctx.err(en, "`enabled` must be true or false")
    when = _condition(ctx, values["when"][1]) if "when" in values else None
    unless = _condition(ctx, values["unless"][1]) if "unless" in values else None
    is_price = "price" in ctx.kinds
    if is_price and ctx.kinds - {"price"}:
        mixed = ", ".join(sorted(ctx.kinds - {"price"}))
        ctx.err(
            values["when"][0] if "when" in values else node,
            f"a rule tests either a price event or a news item: `price` cannot be mixed with {mixed}",
        )
    if len(ctx.errors) > before or when is None or not enabled:
        return None
    return Rule(
        id=rule_id,
        title=title,
        category=category,
        severity=severity,
        tickers=tickers,
        cooldown=cooldown,
        is_price=is_price,
        path=ctx.path,
        line=node.start_mark.line + 1,
        description=description,
        when=when,
        unless=unless,
    )


def parse_source(src: Source, seen: dict[str, str], errors: list[RuleError]) -> list[Rule]:
    """Rules of one file; errors are appended, `seen` tracks ids across files."""
    ctx = _Ctx(src.path)
    try:
        root = yaml.compose(src.text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        errors.append(RuleError(src.path, line, col, f"YAML syntax: {e.problem or e}"))
        return []
    except yaml.YAMLError as e:
        errors.append(RuleError(src.path, 1, 1, f"YAML: {e}"))
        return []
    if root is None or (isinstance(root, ScalarNode) and root.tag == _NULL_TAG):
        return []
    if not isinstance(root, MappingNode):
        ctx.err(root, "a rule file is a mapping with a `rules:` list")
        errors.extend(ctx.errors)
        return []
    rules: list[Rule] = []
    for key, kn, vn in _pairs(ctx, root):
        if key not in TOP_KEYS:
            _unknown(ctx, kn, key, TOP_KEYS, "top-level key")
            continue
        if isinstance(vn, ScalarNode) and vn.tag == _NULL_TAG:
            continue
        if not isinstance(vn, SequenceNode):
            ctx.err(vn, "`rules` must be a list of rules")
            continue
        for rn in vn.value:
            r = _rule(ctx, rn, seen)
            if r is not None:
                rules.append(r)
    errors.extend(ctx.errors)
    return rules


def rule_files(paths: Sequence[Path] | Path) -> list[Path]:
    """Expand directories to their rule packs (not watchlist.yaml / sources.yaml: other formats)."""
    if isinstance(paths, Path | str):
        paths = [Path(paths)]
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = [f for f in p.iterdir() if f.suffix in (".yaml", ".yml") and f.is_file()]
            out.extend(sorted(f for f in found if f.name not in EXCLUDED_FILES))
        else:
            out.append(p)
    return out


def read_sources(paths: Sequence[Path] | Path) -> list[Source]:
    errors: list[RuleError] = []
    sources: list[Source] = []
    for f in rule_files(paths):
        try:
            sources.append(Source(str(f), f.read_text(encoding="utf-8")))
        except FileNotFoundError:
            errors.append(RuleError(str(f), 1, 1, "no such file or directory"))
        except (OSError, UnicodeDecodeError) as e:
            errors.append(RuleError(str(f), 1, 1, f"cannot read: {e}"))
    if errors:
        raise RuleLoadError(errors)
    return sources


def parse_sources(sources: Sequence[Source]) -> list[Rule]:
    """All rules of all sources, or RuleLoadError with every problem found."""
    errors: list[RuleError] = []
    seen: dict[str, str] = {}
    rules: list[Rule] = []
    for src in sources:
        rules.extend(parse_source(src, seen, errors))
    if errors:
        raise RuleLoadError(errors)
    return rules
