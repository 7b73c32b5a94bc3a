"""Compiled matching: one Aho-Corasick pass per text field, then only the rules whose literals hit.

The cost per item is therefore roughly independent of the number of rules: every phrase of
every rule, and the literals every regex needs (regex_literals), live in an automaton per
field (the headline's holds only what headline and text leaves use, the summary's what
summary, text and lead leaves use); boolean trees are evaluated only for rules whose literals
hit, filing rules only for items of their form, plus the few rules that need no literal. A
regex runs only when a tree reaches it and its literals were seen in the field, once, asking
for its first match's span: that span is its explanation, built only for rules that fired
and only when asked for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ahocorasick
import re2

from daemon.models import Explanation, Item, Match, PriceEvent

from . import conditions as c
from .loader import Source, normalize_form, parse_sources, re2_options, read_sources, regex_for_matching
from .regex_literals import required_literals
from .rule import Rule
from .textnorm import is_collapsed, is_nospace_script, lead_length, lower_same_length, to_original


class _ItemCtx:
    """What one item looks like to the rule trees: hit literals per field, plus the item.

    `tsame` / `ssame` say the collapsed field is the original one, so explanation offsets
    need no mapping back.
    """

    __slots__ = (
        "item", "lascii", "lb", "lc", "lh", "lrx", "rx", "sascii", "sb", "sc", "sh", "srx", "ssame",
        "tascii", "tb", "tc", "th", "trx", "tsame",
    )  # fmt: skip

    def __init__(self, item: Item, rx: dict[int, Any]) -> None:
        self.item = item
        self.rx = rx  # regex id -> compiled regex, for the runs the rule trees ask for
        title, summary = item.title, item.summary
        # is_collapsed() once per field: collapse() would ask it again
        self.tsame = is_collapsed(title)
        self.tc = title if self.tsame else " ".join(title.split())
        self.ssame = is_collapsed(summary)
        self.sc = summary if self.ssame else " ".join(summary.split())
        self.th: dict[int, int] = {}  # phrase id -> start in collapsed title
        self.sh: dict[int, int] = {}
        # Regexes that may match the collapsed title / summary / lead (their literals were seen):
        # id -> UTF-8 byte span of the first match, (-1, -1) for none, _NOT_RUN until a tree asks.
        self.trx: dict[int, tuple[int, int]] = _NO_RX
        self.srx: dict[int, tuple[int, int]] = _NO_RX
        self.lc = ""  # the lead (a prefix of sc), filled only when some rule reads it
        self.lh: dict[int, int] = _NO_HITS
        self.lrx: dict[int, tuple[int, int]] = _NO_RX
        # UTF-8 of the collapsed fields, made when some regex runs on them (spans are offsets in them)
        self.tb = self.sb = self.lb = b""
        self.tascii = self.sascii = self.lascii = True


_NO_HITS: dict[int, int] = {}  # shared, never written
_NO_RX: dict[int, tuple[int, int]] = {}  # shared, never written
_NOT_RUN = (-2, -2)  # a regex not run yet (compared by identity)
_MISS = (-1, -1)


def _has(x: _ItemCtx, d: dict[int, tuple[int, int]], data: bytes, rids: tuple[int, ...]) -> bool:
    """Whether one of the regexes matches a field, running only those not run yet, in order.

    A regex runs when a rule tree reaches it, not when its literals are seen: `all` and
    `any` stop early, so a regex next to a phrase that missed never runs.
    """
    for rid in rids:
        span = d.get(rid)
        if span is not None:
            if span is _NOT_RUN:
                span = d[rid] = x.rx[rid].Match(_UNANCHORED, data, 0, len(data))[0]
            if span[0] >= 0:
                return True
    return False


def _first_span(x: _ItemCtx, d: dict[int, tuple[int, int]], data: bytes, rid: int) -> tuple[int, int]:
    span = d.get(rid, _MISS)
    if span is _NOT_RUN:
        span = d[rid] = x.rx[rid].Match(_UNANCHORED, data, 0, len(data))[0]
    return span


Pred = Callable[[Any], bool]


_COMMON_FIRST = " etaoinsrhldcumfpgwybvkxjqz0123456789.,-'\"()/:;$%&"
_CHAR_RANK = {ch: i for i, ch in enumerate(_COMMON_FIRST)}


def _frequency_order(entry: tuple[str, Any]) -> list[int]:
    return [_CHAR_RANK.get(ch, len(_COMMON_FIRST) + ord(ch)) for ch in entry[0]]


_NO_LITS: list[int] = []  # shared, never written


def _walk(auto: Any, low: str, a: int, b: int, hits: dict[int, int]) -> list[int]:
    """One field's automaton pass over low[a:b]: whole-word phrase hits and the literals seen.

    `hits` gets phrase id -> first whole-word start, relative to a; the literals come back
    as a list (repeats and all: their only use is a set union).
    """
    lits: list[int] = []
    for end, (pid, plen, lw, rw, lid) in auto.iter(low, a, b):
        if lid >= 0:
            lits.append(lid)
            if pid < 0:
                continue
        if pid in hits:
            continue
        start = end - plen + 1
        if lw and start > a:
            ch = low[start - 1]
            if (ch.isalnum() or ch == "_") and (ch < "\u0e00" or not is_nospace_script(ch)):
                continue
        if rw and end + 1 < b:
            ch = low[end + 1]
            if (ch.isalnum() or ch == "_") and (ch < "\u0e00" or not is_nospace_script(ch)):
                continue
        hits[pid] = start - a
    return lits


def _form_matches(patterns: tuple[str, ...], form: str | None) -> bool:
    """'8-K' matches 8-K and its amendments (8-K/A); '424B*' is a prefix; '8-K/A' only amendments."""
    if not form:
        return False
    f = normalize_form(form)
    for p in patterns:
        if p.endswith("*"):
            if f.startswith(p[:-1]):
                return True
        elif f == p or f.startswith(p + "/"):
            return True
    return False


def _url_has_phrase(url: str, phrase: str) -> int:
    low = url.lower()
    i = low.find(phrase)
    while i >= 0:
        j = i + len(phrase)
        if _bounded(low, i, j):
            return i
        i = low.find(phrase, i + 1)
    return -1


def _find_bounded(low: str, phrase: str) -> int:
    """First whole-word occurrence of a lowercase phrase in lowercased text, or -1."""
    i = low.find(phrase)
    while i >= 0:
        if _bounded(low, i, i + len(phrase)):
            return i
        i = low.find(phrase, i + 1)
    return -1


def _word(ch: str) -> bool:
    return (ch.isalnum() or ch == "_") and not is_nospace_script(ch)


def _bounded(text: str, start: int, end: int) -> bool:
    if start > 0 and _word(text[start]) and _word(text[start - 1]):
        return False
    return not (end < len(text) and _word(text[end - 1]) and _word(text[end]))


def _all_of(kids: tuple[Pred, ...]) -> Pred:
    # Plain closures rather than all(genexpr): a generator per node per item is the dearest
    # part of evaluating a tree.
    if len(kids) == 1:
        return kids[0]
    if len(kids) == 2:
        a, b = kids
        return lambda x: a(x) and b(x)

    def all_(x: Any) -> bool:
        for k in kids:  # noqa: SIM110 - a loop beats all()/any() over a generator here
            if not k(x):
                return False
        return True

    return all_


def _any_of(kids: tuple[Pred, ...]) -> Pred:
    if len(kids) == 1:
        return kids[0]
    if len(kids) == 2:
        a, b = kids
        return lambda x: a(x) or b(x)

    def any_(x: Any) -> bool:
        for k in kids:  # noqa: SIM110 - a loop beats all()/any() over a generator here
            if k(x):
                return True
        return False

    return any_


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: Rule
    when: Pred
    unless: Pred | None
    gated: bool


Explainer = Callable[[_ItemCtx, str, set[str], list[Explanation]], None]


def _span_options() -> re2.Options:
    opts = re2.Options()
    opts.log_errors = False
    # Room for the DFA of patterns like `^.{0,300}\b(merger|...)`: with the default 8 MB RE2
    # keeps flushing its state cache and runs several times slower. A cap, not an allocation.
    opts.max_mem = 64 << 20
    # Each run wants the first match's span only; without groups RE2 need not rerun the match
    # on its NFA.
    opts.never_capture = True
    return opts


_SPAN_OPTIONS = _span_options()
# google-re2's low-level anchor (private); None sends every run through the public search()
_UNANCHORED: Any = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)

# Above any literal gate's cost: an `all` of a filing leaf and phrases gates on the phrases.
_FORM_COST = 1000.0
# Bound a cache of form -> filing rules: forms are a small vocabulary, but a feed could send junk.
_FORM_CACHE_MAX = 4096


class RuleSet:
    """An immutable, compiled set of rules; build a new one to change rules."""

    def __init__(self, rules: Sequence[Rule], version: str = "") -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.version = (
            version
            or hashlib.sha256("\n".join(f"{r.path}:{r.line}:{r.id}" for r in self.rules).encode()).hexdigest()[:16]
        )
        self._by_id = {r.id: r for r in self.rules}
        self._phrase_ids: dict[str, int] = {}
        self._regex_ids: dict[str, int] = {}
        self._regex_fields: dict[int, set[str]] = {}
        self._url_regex: dict[str, Any] = {}
        self._lead_pids: set[int] = set()
        self._phrase_fields: dict[int, set[str]] = {}
        item_rules = [r for r in self.rules if not r.is_price]
        self._price_rules = tuple(r for r in self.rules if r.is_price)
        for r in item_rules:
            for tree in (r.when, r.unless):
                if tree is not None:
                    self._collect(tree)
        self._single: dict[int, Any] = {
            rid: _raw(re2.compile(regex_for_matching(p), _SPAN_OPTIONS)) for p, rid in self._regex_ids.items()
        }
        self._uses_lead = bool(self._lead_pids) or any("lead" in f for f in self._regex_fields.values())
        self._build_regex_gates()
        self._build_automaton()
        self._compiled: list[_Compiled] = []
        self._leaf_pred: dict[int, Pred] = {}  # by id(): node hashes are deep
        self._leaf_pids: dict[int, frozenset[int]] = {}
        self._phrase_len = {pid: len(p) for p, pid in self._phrase_ids.items()}
        self._phrase_text = {pid: p for p, pid in self._phrase_ids.items()}
        lit_rules: dict[tuple[str, int], list[int]] = {}
        always: list[int] = []
        form_rules: list[tuple[int, tuple[str, ...]]] = []
        items_rules: list[int] = []
        for r in item_rules:
            assert r.when is not None
            idx = len(self._compiled)
            gate = self._gate(r.when)
            self._compiled.append(
                _Compiled(r, self._pred(r.when), self._pred(r.unless) if r.unless else None, gate is not None)
            )
            if gate is None:
                always.append(idx)
                continue
            forms = tuple(sorted(str(k[1]) for k in gate[1] if k[0] == "f"))
            if forms:
                form_rules.append((idx, forms))
            if ("i", 0) in gate[1]:
                items_rules.append(idx)
            for k in gate[1]:
                if k[0] in ("p", "r"):
                    lst = lit_rules.setdefault((k[0], int(k[1])), [])
                    if not lst or lst[-1] != idx:
                        lst.append(idx)
        self._by_phrase = {pid: tuple(v) for (kind, pid), v in lit_rules.items() if kind == "p"}
        self._by_regex = {rid: tuple(v) for (kind, rid), v in lit_rules.items() if kind == "r"}
        self._always = tuple(always)
        self._form_rules = tuple(form_rules)
        self._items_rules = tuple(items_rules)
        self._by_form: dict[str, tuple[int, ...]] = {}
        # Hot-path views: plain tuples indexed by rule number, no attribute lookups per item.
        self._evals: tuple[tuple[Pred, Pred | None], ...] = tuple((k.when, k.unless) for k in self._compiled)
        # per rule, built when it first fires: its leaf explainers and how many fields they explain
        self._explainers: list[tuple[tuple[Explainer, ...], int] | None] = [None] * len(self._compiled)
        self._price_compiled = [
            _Compiled(r, self._pred(r.when), self._pred(r.unless) if r.unless else None, False)
            for r in self._price_rules
            if r.when is not None
        ]

    # ------------------------------------------------------------ compile

    def _collect(self, tree: c.Node) -> None:
        for node in c.walk(tree):
            if isinstance(node, c.Phrases | c.AllWords) and node.field in c.TEXT_FIELDS:
                words = node.phrases if isinstance(node, c.Phrases) else node.words
                for p in words:
                    pid = self._phrase_ids.setdefault(p, len(self._phrase_ids))
                    self._phrase_fields.setdefault(pid, set()).add(node.field)
                    if node.field == "lead":
                        self._lead_pids.add(pid)
            elif isinstance(node, c.Regex):
                if node.field in c.TEXT_FIELDS:
                    for p in node.patterns:
                        rid = self._regex_ids.setdefault(p, len(self._regex_ids))
                        self._regex_fields.setdefault(rid, set()).add(node.field)
                else:
                    for p in node.patterns:
                        self._url_regex.setdefault(p, re2.compile(regex_for_matching(p), re2_options()))

    def _gate(self, node: c.Node) -> tuple[float, frozenset[tuple[str, int | str]]] | None:
        """What must be there for `node` to be true (one of them at least), with a rough cost.

        ("p", phrase id) and ("r", regex id) are literals of the automaton pass; ("f", form
        pattern) is an item form and ("i", 0) any 8-K item number, so that `any` of phrases and
        a filing leaf is looked at only for items with the phrases or of the form, not always.
        For `all`, one child is enough to gate on, so the cheapest (rarest-looking) child is
        chosen: a regex (already narrowed by its literal gate) or long phrases rather than a
        common short word, and literals before forms. That keeps the candidates per item few
        even with 1,000 rules. None: the node may be true without any of these.
        """
        if isinstance(node, c.Phrases) and node.field in c.TEXT_FIELDS:
            keys = frozenset(("p", self._phrase_ids[p]) for p in node.phrases)
            return sum(1.0 / len(p) for p in node.phrases), keys
        if isinstance(node, c.AllWords) and node.field in c.TEXT_FIELDS:
            longest = max(node.words, key=len)
            return 1.0 / len(longest), frozenset({("p", self._phrase_ids[longest])})
        if isinstance(node, c.Regex) and node.field in c.TEXT_FIELDS:
            return 0.01 * len(node.patterns), frozenset(("r", self._regex_ids[p]) for p in node.patterns)
        if isinstance(node, c.Filing):
            if node.forms:
                return _FORM_COST, frozenset(("f", f) for f in node.forms)
            return (_FORM_COST, frozenset({("i", 0)})) if node.items else None
        if isinstance(node, c.All):
            gates = [g for g in (self._gate(k) for k in node.children) if g is not None]
            return min(gates, key=lambda g: g[0]) if gates else None
        if isinstance(node, c.Any_):
            cost = 0.0
            acc: set[tuple[str, int | str]] = set()
            for k in node.children:
                g = self._gate(k)
                if g is None:
                    return None
                cost += g[0]
                acc |= g[1]
            return cost, frozenset(acc)
        return None

    def _build_regex_gates(self) -> None:
        """Which regexes each required literal (regex_literals) may let match, per text field.

        The literals ride along in the automaton pass, so a regex runs only on a field where a
        string of each of its required sets was seen: most fields run none, the rest a few.
        Each run asks for the first match's span, which is the explanation span too.
        """
        capable = {
            where: {rid for rid, f in self._regex_fields.items() if f & names}
            for where, names in (("h", {"headline", "text"}), ("s", {"summary", "text"}), ("l", {"lead"}))
        }
        self._lit_ids: dict[str, int] = {}
        one_set: dict[int, list[int]] = {}  # literal -> regexes with one required set, this among it
        multi: dict[int, list[tuple[int, int]]] = {}  # literal -> (regex, bit of its set), several sets
        self._rx_full: dict[int, int] = {}  # regex -> bits of all its sets
        always: list[int] = []
        for pattern, rid in self._regex_ids.items():
            sets = required_literals(pattern)
            if sets is None:
                always.append(rid)
                continue
            self._rx_full[rid] = (1 << len(sets)) - 1
            for k, lits in enumerate(sets):
                for lit in sorted(lits):
                    lid = self._lit_ids.setdefault(lit, len(self._lit_ids))
                    if len(sets) == 1:
                        one_set.setdefault(lid, []).append(rid)
                    else:
                        multi.setdefault(lid, []).append((rid, 1 << k))
        # Per field ("h", "s", "l"), as ready-made {regex id: _NOT_RUN} dicts that a field's dict
        # of regexes to run is updated from: literal number -> the one-set regexes it lets
        # run; literal -> (regex, bit) of regexes with several sets; regexes without literals.
        self._rx_one: dict[str, list[dict[int, tuple[int, int]]]] = {}
        self._rx_multi: dict[str, dict[int, tuple[tuple[int, int], ...]]] = {}
        self._rx_lits: dict[str, set[int]] = {}  # literals that matter for the field
        self._rx_always: dict[str, dict[int, tuple[int, int]]] = {}
        self._rx_all: dict[str, dict[int, tuple[int, int]]] = {}
        for where, able in capable.items():
            self._rx_one[where] = [
                dict.fromkeys((r for r in one_set.get(lid, ()) if r in able), _NOT_RUN)
                for lid in range(len(self._lit_ids))
            ]
            several = {lid: tuple(e for e in v if e[0] in able) for lid, v in multi.items()}
            self._rx_multi[where] = {lid: v for lid, v in several.items() if v}
            self._rx_lits[where] = {lid for lid, d in enumerate(self._rx_one[where]) if d} | set(self._rx_multi[where])
            self._rx_always[where] = dict.fromkeys((r for r in always if r in able), _NOT_RUN)
            self._rx_all[where] = dict.fromkeys(sorted(able), _NOT_RUN)

    def _build_automaton(self) -> None:
        """One automaton for the headline, one for the summary: each holds only its field's keys.

        A phrase of headline leaves found in the summary (or a literal of headline regexes)
        could not make any leaf true there; in newswire, words like `net`, `sale` or `shares`
        would otherwise cost a Python loop turn each, several per summary.
        """
        title, summary = {"headline", "text"}, {"summary", "text", "lead"}
        self._tauto = self._automaton(title, "h")
        self._sauto = self._automaton(summary, "sl")

    def _automaton(self, fields: set[str], wheres: str) -> Any:
        entries: dict[str, list[int]] = {}  # key -> [phrase id, literal id], -1 for none
        for phrase, pid in self._phrase_ids.items():
            if self._phrase_fields[pid] & fields:
                entries.setdefault(phrase, [-1, -1])[0] = pid
        for lit, lid in self._lit_ids.items():
            if any(lid in self._rx_lits[w] for w in wheres):
                entries.setdefault(lit, [-1, -1])[1] = lid
        if not entries:
            return None
        a = ahocorasick.Automaton()
        # pyahocorasick finds a node's child by a linear scan, in the order children were
        # added: keys added in order of their characters' frequency in English text put the
        # commonest letters (and the space) first in every node, the root above all.
        for key, (pid, lid) in sorted(entries.items(), key=_frequency_order):
            # Boundaries are only asked where the phrase edge is itself a word character;
            # regex literals need none (the regex decides).
            a.add_word(key, (pid, len(key), _word(key[0]), _word(key[-1]), lid))
        a.make_automaton()
        return a

    def _pred(self, node: c.Node) -> Pred:
        pred = self._make_pred(node)
        if not isinstance(node, c.All | c.Any_ | c.Not):
            self._leaf_pred[id(node)] = pred
        return pred

    def _make_pred(self, node: c.Node) -> Pred:
        if isinstance(node, c.All):
            return _all_of(tuple(self._pred(k) for k in node.children))
        if isinstance(node, c.Any_):
            return _any_of(tuple(self._pred(k) for k in node.children))
        if isinstance(node, c.Not):
            inner = self._pred(node.child)
            return lambda x: not inner(x)
        if isinstance(node, c.Phrases | c.AllWords) and node.field in c.TEXT_FIELDS:
            words = node.phrases if isinstance(node, c.Phrases) else node.words
            pids = frozenset(self._phrase_ids[p] for p in words)
            self._leaf_pids[id(node)] = pids
            if isinstance(node, c.AllWords):
                if node.field == "headline":
                    return lambda x: all(p in x.th for p in pids)
                if node.field == "summary":
                    return lambda x: all(p in x.sh for p in pids)
                if node.field == "lead":
                    return lambda x: all(p in x.lh for p in pids)
                return lambda x: all(p in x.th or p in x.sh for p in pids)
            if node.field == "headline":
                return lambda x: not x.th.keys().isdisjoint(pids)
            if node.field == "summary":
                return lambda x: not x.sh.keys().isdisjoint(pids)
            if node.field == "lead":
                return lambda x: not x.lh.keys().isdisjoint(pids)
            return lambda x: not (x.th.keys().isdisjoint(pids) and x.sh.keys().isdisjoint(pids))
        if isinstance(node, c.Regex) and node.field in c.TEXT_FIELDS:
            rids = tuple(dict.fromkeys(self._regex_ids[p] for p in node.patterns))
            if node.field == "headline":
                return lambda x: _has(x, x.trx, x.tb, rids)
            if node.field == "summary":
                return lambda x: _has(x, x.srx, x.sb, rids)
            if node.field == "lead":
                return lambda x: _has(x, x.lrx, x.lb, rids)
            return lambda x: _has(x, x.trx, x.tb, rids) or _has(x, x.srx, x.sb, rids)
        if isinstance(node, c.Phrases | c.AllWords):  # url
            words = node.phrases if isinstance(node, c.Phrases) else node.words
            if isinstance(node, c.AllWords):
                return lambda x: all(_url_has_phrase(x.item.url, w) >= 0 for w in words)
            return lambda x: any(_url_has_phrase(x.item.url, w) >= 0 for w in words)
        if isinstance(node, c.Regex):  # url
            pats = tuple(self._url_regex[p] for p in node.patterns)
            return lambda x: any(p.search(x.item.url) is not None for p in pats)
        if isinstance(node, c.InSet):
            vals = node.values
            if node.field == "source":
                return lambda x: x.item.source_id in vals
            if node.field == "url":
                return lambda x: x.item.url in vals
            return lambda x: not vals.isdisjoint(x.item.tickers)
        if isinstance(node, c.Filing):
            forms, items = node.forms, node.items

            def filing(x: _ItemCtx) -> bool:
                if forms and not _form_matches(forms, x.item.form):
                    return False
                return not items or not items.isdisjoint(i.strip() for i in x.item.filing_items)

            return filing
        if isinstance(node, c.Price):
            comps, window = node.comparisons, node.window

            def price(ev: PriceEvent) -> bool:
                if window is not None and (ev.window or "").strip().lower() != window:
                    return False
                for cmp in comps:
                    v = ev.metrics.get(cmp.metric)
                    if v is None or not c.compare(cmp.op, float(v), cmp.value):
                        return False
                return True

            return price
        raise TypeError(f"unknown condition {node!r}")  # pragma: no cover

    # ------------------------------------------------------------ evaluate

    def _scan(self, x: _ItemCtx) -> None:
        """Each text field's automaton pass (phrases and regex literals), then the regexes that may run."""
        tc, sc = x.tc, x.sc
        tlen = len(tc)
        if not (tc or sc):
            return
        low = lower_same_length(f"{tc}\n{sc}")
        tlit = _walk(self._tauto, low, 0, tlen, x.th) if tc and self._tauto is not None else _NO_LITS
        slit = _walk(self._sauto, low, tlen + 1, len(low), x.sh) if sc and self._sauto is not None else _NO_LITS
        # RE2 folds `s` with U+017F under (?i) but str.lower() keeps it: run every regex then.
        odd = "\u017f" in low
        if tc:
            run = dict(self._rx_all["h"]) if odd else self._potential(tlit, "h")
            if run:
                x.tb = tb = tc.encode()
                x.tascii = len(tb) == len(tc)
                x.trx = run
        if sc:
            run = dict(self._rx_all["s"]) if odd else self._potential(slit, "s")
            if run:
                x.sb = sb = sc.encode()
                x.sascii = len(sb) == len(sc)
                x.srx = run
        if sc and self._uses_lead:
            self._scan_lead(x, low, tlen + 1, slit, odd)

    def _scan_lead(self, x: _ItemCtx, low: str, at: int, slit: list[int], odd: bool) -> None:
        """The lead's hits, from the summary's: it is a prefix of the summary, so no second pass.

        A phrase is in the lead when its first whole-word occurrence in the summary ends inside
        it; word boundaries agree because the lead ends where the summary has a space. Only a
        lead cut inside a word (no space in its first LEAD_CHARS characters) is searched anew,
        in the lowercased summary (which starts at `at` in `low`).
        """
        sc, sh = x.sc, x.sh
        n = lead_length(sc)
        x.lc = lc = sc if n == len(sc) else sc[:n]
        if self._lead_pids and sh:
            plen = self._phrase_len
            if n == len(sc) or sc[n] == " ":
                x.lh = {pid: pos for pid, pos in sh.items() if pos + plen[pid] <= n and pid in self._lead_pids}
            else:
                lead_low = low[at : at + n]
                hits: dict[int, int] = {}
                for pid in self._lead_pids.intersection(sh):
                    pos = _find_bounded(lead_low, self._phrase_text[pid])
                    if pos >= 0:
                        hits[pid] = pos
                x.lh = hits
        if not self._rx_all["l"]:
            return
        run = dict(self._rx_all["l"]) if odd else self._potential(slit, "l")
        if run:
            x.lb = lb = x.sb[:n] if x.sb and x.sascii else lc.encode()
            x.lascii = len(lb) == n
            x.lrx = run

    def _potential(self, lits: list[int], where: str) -> dict[int, tuple[int, int]]:
        """Regexes of a field that may match (a string of each of their required sets was seen).

        A fresh dict, each regex _NOT_RUN: its runs are written into it.
        """
        pot = dict(self._rx_always[where])
        if lits:
            one = self._rx_one[where]
            for lid in lits:
                pot.update(one[lid])
            multi = self._rx_multi[where]
            if multi:
                full = self._rx_full
                seen: dict[int, int] = {}
                for lid in lits:
                    for rid, bit in multi.get(lid, ()):
                        bits = seen[rid] = seen.get(rid, 0) | bit
                        if bits == full[rid]:
                            pot[rid] = _NOT_RUN
        return pot

    def _candidates(self, x: _ItemCtx) -> list[int]:
        """Rule numbers worth evaluating for this item, in rule order."""
        cand: set[int] = set(self._always)
        bp = self._by_phrase
        for hits in (x.th, x.sh):
            for pid in hits:
                r = bp.get(pid)
                if r:
                    cand.update(r)
        br = self._by_regex
        for rids in (x.trx, x.srx, x.lrx):
            for rid in rids:
                r = br.get(rid)
                if r:
                    cand.update(r)
        item = x.item
        if item.form:
            cand.update(self._rules_for_form(item.form))
        if item.filing_items:
            cand.update(self._items_rules)
        return sorted(cand)

    def _rules_for_form(self, form: str) -> tuple[int, ...]:
        got = self._by_form.get(form)
        if got is None:
            got = tuple(idx for idx, pats in self._form_rules if _form_matches(pats, form))
            if len(self._by_form) >= _FORM_CACHE_MAX:
                self._by_form.clear()
            self._by_form[form] = got
        return got

    def _fired(self, item: Item) -> tuple[_ItemCtx, list[int]]:
        x = _ItemCtx(item, self._single)
        self._scan(x)
        evals = self._evals
        fired: list[int] = []
        for i in self._candidates(x):
            when, unless = evals[i]
            if when(x) and (unless is None or not unless(x)):
                fired.append(i)
        return x, fired

    def match_item(self, item: Item, *, ignore_scope: bool = False, explain: bool = True) -> list[Match]:
        """Matches of an item: one per (rule, item ticker in the rule's scope).

        An item without tickers gives one Match with ticker "" for rules scoped to every ticker
        ("*"); rules scoped to named tickers need one of them on the item. `ignore_scope`
        (used by `keynews rules test`) treats the item as in scope of every rule. `explain=False`
        skips building explanations (the only per-rule regex runs), for callers that only want
        which rules fired.
        """
        x, fired = self._fired(item)
        out: list[Match] = []
        compiled = self._compiled
        item_tickers = item.tickers
        for i in fired:
            r = compiled[i].rule
            if item_tickers:
                tickers = [t for t in item_tickers if ignore_scope or r.in_scope(t)]
                if not tickers:
                    continue
            elif ignore_scope or r.all_tickers:
                tickers = [""]
            else:
                continue
            expl = self._explain_item(i, x) if explain else ()
            for t in tickers:
                out.append(Match(r.id, r.title, r.category, r.severity, t, expl))
        return out

    def match_price(self, event: PriceEvent) -> list[Match]:
        """Price rules whose condition holds for this event now (cooldown is the caller's state)."""
        out: list[Match] = []
        for cr in self._price_compiled:
            r = cr.rule
            if not r.in_scope(event.ticker):
                continue
            if cr.when(event) and (cr.unless is None or not cr.unless(event)):
                out.append(Match(r.id, r.title, r.category, r.severity, event.ticker, self._explain_price(r, event)))
        return out

    # ------------------------------------------------------------ explain

    def _explain_item(self, idx: int, x: _ItemCtx) -> tuple[Explanation, ...]:
        """One explanation per field of the rule: its first true leaf there, at the first match.

        The first span is all a reader needs to see why, and it keeps explaining cheap: no
        pattern is searched past its first match, and a field already explained is skipped.
        """
        built = self._explainers[idx]
        if built is None:
            when = self._compiled[idx].rule.when
            assert when is not None
            leaves = _positive_leaves(when)
            fields = set().union(*(_leaf_fields(node) for node in leaves))
            built = self._explainers[idx] = (tuple(self._leaf_explainer(node) for node in leaves), len(fields))
        explainers, n_fields = built
        rid = self._compiled[idx].rule.id
        out: list[Explanation] = []
        done: set[str] = set()
        for ex in explainers:
            ex(x, rid, done, out)
            if len(done) == n_fields:
                break  # every field the rule can explain is: the leaves left could add nothing
        return tuple(out)

    def _leaf_explainer(self, node: c.Node) -> Explainer:
        """A function adding a true leaf's explanations for the fields not yet explained.

        Built once per leaf, so explaining a fired rule does no tree walking or type dispatch.
        """
        pred = self._leaf_pred[id(node)]
        fields = _WHERES
        if isinstance(node, c.Phrases | c.AllWords) and node.field in c.TEXT_FIELDS:
            pids = self._leaf_pids[id(node)]
            plen = self._phrase_len
            wheres = fields[node.field]

            def phrases(x: _ItemCtx, rid: str, done: set[str], out: list[Explanation]) -> None:
                if done.issuperset(wheres) or not pred(x):
                    return
                for t in wheres:
                    if t in done:
                        continue
                    hits = x.th if t == "h" else x.sh if t == "s" else x.lh
                    got = pids.intersection(hits)
                    if got:
                        pid = min(got, key=hits.__getitem__) if len(got) > 1 else next(iter(got))
                        pos = hits[pid]
                        out.append(_span(rid, x, t, pos, pos + plen[pid]))
                        done.add(t)

            return phrases
        if isinstance(node, c.Regex) and node.field in c.TEXT_FIELDS:
            prids = [self._regex_ids[p] for p in node.patterns]
            wheres = fields[node.field]

            def regex(x: _ItemCtx, rid: str, done: set[str], out: list[Explanation]) -> None:
                if done.issuperset(wheres) or not pred(x):
                    return
                for t in wheres:
                    if t in done:
                        continue
                    hit, data = (x.trx, x.tb) if t == "h" else (x.srx, x.sb) if t == "s" else (x.lrx, x.lb)
                    for prid in prids:
                        span = _first_span(x, hit, data, prid)
                        if span[0] >= 0:
                            start, end = _chars(x, t, span)
                            out.append(_span(rid, x, t, start, end))
                            done.add(t)
                            break

            return regex

        url_regex = self._url_regex

        def other(x: _ItemCtx, rid: str, done: set[str], out: list[Explanation]) -> None:
            if not pred(x):
                return
            for e in _explain_other(rid, node, x.item, url_regex):
                if e.field not in done:
                    out.append(e)
                    done.add(e.field)

        return other

    def _explain_price(self, rule: Rule, ev: PriceEvent) -> tuple[Explanation, ...]:
        assert rule.when is not None
        out: list[Explanation] = []
        for node in _positive_leaves(rule.when):
            if isinstance(node, c.Price) and self._leaf_pred[id(node)](ev):
                parts = [
                    f"{k.metric}={ev.metrics.get(k.metric, float('nan')):+.2f} ({k.op} {k.value:g})"
                    for k in node.comparisons
                ]
                if node.window:
                    parts.append(f"window {node.window}")
                out.append(Explanation(rule.id, "price", ", ".join(parts)))
        return tuple(dict.fromkeys(out))

    # ------------------------------------------------------------ queries

    def price_rules(self) -> tuple[Rule, ...]:
        return self._price_rules

    def get(self, rule_id: str) -> Rule | None:
        return self._by_id.get(rule_id)

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Iterable[Rule]:
        return iter(self.rules)

    def __repr__(self) -> str:
        return f"RuleSet({len(self.rules)} rules, version={self.version})"


def _span(rid: str, x: _ItemCtx, where: str, start: int, end: int) -> Explanation:
    """A span of the collapsed title or summary, as offsets and text of the original field.

    `where` is "h" (headline), "s" (summary) or "l" (lead: a prefix of the summary, so its
    offsets are the summary's).
    """
    if where == "h":
        original, same, field, collapsed = x.item.title, x.tsame, "headline", x.tc
    else:
        original, same, field, collapsed = x.item.summary, x.ssame, "summary" if where == "s" else "lead", x.sc
    if not same:
        start, end = to_original(original, start, end, collapsed)
    return Explanation(rid, field, original[start:end], start, end)


def _chars(x: _ItemCtx, where: str, span: tuple[int, int]) -> tuple[int, int]:
    """Character offsets of a byte span of a collapsed field's UTF-8 (for ASCII text: the same)."""
    start, end = span
    if not (x.tascii if where == "h" else x.sascii if where == "s" else x.lascii):
        data = x.tb if where == "h" else x.sb if where == "s" else x.lb
        start, end = len(data[:start].decode()), len(data[:end].decode())
    return start, end


class _SearchAdapter:
    """The low-level Match() of google-re2's compiled pattern, through its public search()."""

    __slots__ = ("_rx",)

    def __init__(self, rx: Any) -> None:
        self._rx = rx

    def Match(self, anchor: Any, data: bytes, pos: int, endpos: int) -> list[tuple[int, int]]:
        m = self._rx.search(data, pos, endpos)
        return [(-1, -1) if m is None else m.span()]


def _raw(rx: Any) -> Any:
    """The pybind RE2 object under a compiled pattern: its Match() skips the wrapper's Match object.

    About 1 µs less per regex run. Should a google-re2 release rename it, the public search()
    stands in with the same answers.
    """
    raw = getattr(rx, "_regexp", None)
    if _UNANCHORED is None or raw is None or not hasattr(raw, "Match"):
        return _SearchAdapter(rx)
    return raw


def _explain_other(rid: str, node: c.Node, item: Item, url_regex: dict[str, Any]) -> list[Explanation]:
    """Explanations of a true leaf outside the headline and summary (url, source, tickers, filing)."""
    out: list[Explanation] = []
    if isinstance(node, c.Phrases | c.AllWords):  # url
        words = node.phrases if isinstance(node, c.Phrases) else node.words
        for w in words:
            i = _url_has_phrase(item.url, w)
            if i >= 0:
                out.append(Explanation(rid, "url", item.url[i : i + len(w)], i, i + len(w)))
    elif isinstance(node, c.Regex):  # url
        for p in node.patterns:
            m = url_regex[p].search(item.url)
            if m is not None:
                out.append(Explanation(rid, "url", m.group(), m.start(), m.end()))
    elif isinstance(node, c.InSet):
        if node.field == "source":
            out.append(Explanation(rid, "source", item.source_id))
        elif node.field == "url":
            out.append(Explanation(rid, "url", item.url, 0, len(item.url)))
        else:
            hit = [t for t in item.tickers if t in node.values]
            out.append(Explanation(rid, "tickers", ", ".join(hit)))
    elif isinstance(node, c.Filing):
        text = item.form or ""
        got = [i for i in item.filing_items if i.strip() in node.items]
        if got:
            text = f"{text} item {', '.join(got)}".strip()
        out.append(Explanation(rid, "filing", text))
    return out


_WHERES = {"headline": ("h",), "summary": ("s",), "text": ("h", "s"), "lead": ("l",)}


def _leaf_fields(node: c.Node) -> tuple[str, ...]:
    """The keys a leaf's explainer may add to `done`: field codes for text, field names else."""
    if isinstance(node, c.Phrases | c.AllWords | c.Regex):
        return _WHERES.get(node.field, ("url",))
    if isinstance(node, c.InSet):
        return (node.field if node.field in ("source", "url") else "tickers",)
    if isinstance(node, c.Filing):
        return ("filing",)
    return ()


def _positive_leaves(node: c.Node) -> list[c.Node]:
    """Leaves that can explain a match: not those under `not` (their truth is a non-match)."""
    if isinstance(node, c.All | c.Any_):
        return [leaf for k in node.children for leaf in _positive_leaves(k)]
    if isinstance(node, c.Not):
        return []
    return [node]


def _version(sources: Sequence[Source]) -> str:
    h = hashlib.sha256()
    for s in sources:
        h.update(s.path.encode())
        h.update(b"\0")
        h.update(s.text.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def load_rules(paths: Sequence[Path] | Path) -> RuleSet:
    """A directory (its *.yaml/*.yml rule packs) or explicit files; raises RuleLoadError."""
    sources = read_sources(paths)
    return RuleSet(parse_sources(sources), _version(sources))


def load_rules_text(text: str, path: str = "<string>") -> RuleSet:
    src = Source(path, text)
    return RuleSet(parse_sources([src]), _version([src]))


def watched_scope(rule: Rule, watched: Iterable[str]) -> tuple[str, ...]:
    """The watched tickers a rule applies to ("*" expands to all of them)."""
    symbols = tuple(watched)
    if rule.all_tickers:
        return symbols
    return tuple(s for s in symbols if s in rule.tickers)
