"""Literal strings an RE2 pattern cannot match without: the regex prefilter of the matcher.

Each operator regex gets a set of lowercase ASCII strings, one of which occurs in every text
the regex matches. The strings join the phrases in the one Aho-Corasick automaton, so a
regex is run (on RE2) only on a field where one of its strings was seen: most items then run
no regex at all, and the run that does happen gives the explanation span for free.

The analysis is deliberately conservative. Anything it does not fully understand gives
None, and the matcher then runs that regex on every item, so a mistake here can cost speed
but must never cost a match. Only ASCII literals are kept: under `(?i)` RE2 folds `s` with
U+017F and `k` with U+212A; the matcher lowercases the text (K -> k) and runs every regex on
a text that contains U+017F.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MIN_LITERAL = 3  # shorter strings hit nearly every text: no use as a filter
_MAX_SET = 16  # cross products of alternatives stop growing past this
_MAX_LEN = 48
_MAX_CLASS = 6
_RARE_SIGNS = frozenset("?!$%#@*=~^|<>{}[]")  # a [- ] class is two alternatives; [a-z] is none worth keeping
_REPEAT = re.compile(r"\{(\d+)(?:(,)(\d*))?\}")
_ZERO_WIDTH_ESCAPES = frozenset("bBAz")
_CLASS_ESCAPES = frozenset("dDwWsSC")
_CONTROL_ESCAPES = frozenset("ntrfva")


class Unsupported(Exception):
    """Syntax this analysis does not model; the pattern is then run on every item."""


@dataclass(frozen=True, slots=True)
class _Info:
    exact: frozenset[str] | None  # every string the node can match, when few and known
    req: frozenset[str] | None  # one of these occurs in every match (None: no such set)
    every: tuple[frozenset[str], ...] = ()  # sets that are all required (each: one of its strings)


_EMPTY = _Info(frozenset({""}), None)
_ANY_CHAR = _Info(None, None)
_MAX_SETS = 1  # more sets per regex (all required) measured no faster on the bench: more literal hits


def _score(s: frozenset[str] | None) -> tuple[int, int]:
    if not s:
        return (0, 0)
    return (min(len(x) for x in s), -len(s))


def _best(*sets: frozenset[str] | None) -> frozenset[str] | None:
    usable = [s for s in sets if s and "" not in s]
    return max(usable, key=_score) if usable else None


def _as_req(info: _Info) -> frozenset[str] | None:
    return _best(info.exact, info.req)


def _product(a: frozenset[str], b: frozenset[str]) -> frozenset[str] | None:
    if len(a) * len(b) > _MAX_SET:
        return None
    out = frozenset(x + y for x in a for y in b)
    if any(len(s) > _MAX_LEN for s in out):
        return None
    return out


def _concat(parts: list[_Info]) -> _Info:
    if not parts:
        return _EMPTY
    if len(parts) == 1:
        return parts[0]
    candidates: list[frozenset[str] | None] = [p.req for p in parts]
    for p in parts:
        candidates.extend(p.every)
    run: frozenset[str] | None = frozenset({""})
    whole: frozenset[str] | None = frozenset({""})
    for p in parts:
        if p.exact is None:
            candidates.append(run)
            run = frozenset({""})
            whole = None
            continue
        candidates.append(p.exact)
        nxt = _product(run, p.exact) if run is not None else None
        if nxt is None:
            candidates.append(run)
            nxt = p.exact
        run = nxt
        if whole is not None:
            whole = _product(whole, p.exact)
    candidates.append(run)
    every = tuple({c for c in candidates if c and "" not in c})
    return _Info(whole, _best(*candidates), every)


def _alternate(alts: list[_Info]) -> _Info:
    exact: frozenset[str] | None = frozenset()
    req: frozenset[str] | None = frozenset()
    for a in alts:
        if exact is not None:
            exact = exact | a.exact if a.exact is not None else None
            if exact is not None and len(exact) > _MAX_SET:
                exact = None
        if req is not None:
            r = _as_req(a)
            req = req | r if r is not None else None
    return _Info(exact, req or None)


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0

    def peek(self) -> str:
        return self.p[self.i] if self.i < len(self.p) else ""

    def parse(self) -> _Info:
        info = self.alternation()
        if self.i != len(self.p):
            raise Unsupported(f"unexpected {self.peek()!r} at {self.i}")
        return info

    def alternation(self) -> _Info:
        alts = [self.sequence()]
        while self.peek() == "|":
            self.i += 1
            alts.append(self.sequence())
        return alts[0] if len(alts) == 1 else _alternate(alts)

    def sequence(self) -> _Info:
        parts: list[_Info] = []
        while self.i < len(self.p) and self.peek() not in "|)":
            parts.append(self.repeat(self.atom()))
        return _concat(parts)

    def repeat(self, info: _Info) -> _Info:
        while True:
            ch = self.peek()
            if ch in ("*", "+", "?"):
                self.i += 1
                lo = 1 if ch == "+" else 0
                hi: int | None = 1 if ch == "?" else None
            elif ch == "{" and (m := _REPEAT.match(self.p, self.i)):
                self.i = m.end()
                lo = int(m.group(1))
                hi = lo if m.group(2) is None else (int(m.group(3)) if m.group(3) else None)
            else:
                return info
            if self.peek() == "?":  # non-greedy: same strings
                self.i += 1
            if lo == 0 and hi == 1 and info.exact is not None:
                info = _Info(info.exact | {""}, None)
            elif lo == 0:
                info = _ANY_CHAR if hi != 0 else _EMPTY
            else:
                info = _Info(info.exact if lo == hi == 1 else None, _as_req(info), info.every)

    def atom(self) -> _Info:
        ch = self.peek()
        self.i += 1
        if ch == "(":
            return self.group()
        if ch == "[":
            return self.char_class()
        if ch == "\\":
            return self.escape()
        if ch in ("^", "$"):
            return _EMPTY
        if ch == ".":
            return _ANY_CHAR
        if ch in ("*", "+", "?"):
            raise Unsupported("repetition without argument")
        return _literal(ch)

    def group(self) -> _Info:
        if self.p.startswith("?", self.i):
            self.i += 1
            if self.p.startswith("P<", self.i) or self.p.startswith("<", self.i):
                end = self.p.find(">", self.i)
                if end < 0:
                    raise Unsupported("unterminated group name")
                self.i = end + 1
            else:
                m = re.compile(r"[imsU-]*([:)])").match(self.p, self.i)
                if m is None:
                    raise Unsupported("unknown group flag")
                self.i = m.end()
                if m.group(1) == ")":
                    return _EMPTY  # (?i) and the like: flags only
        info = self.alternation()
        if self.peek() != ")":
            raise Unsupported("unbalanced parenthesis")
        self.i += 1
        return info

    def escape(self) -> _Info:
        ch = self.peek()
        if not ch:
            raise Unsupported("trailing backslash")
        self.i += 1
        if ch in _ZERO_WIDTH_ESCAPES:
            return _EMPTY
        if ch in _CLASS_ESCAPES or ch in _CONTROL_ESCAPES:
            return _ANY_CHAR
        if ch in ("p", "P"):
            self.unicode_class_name()
            return _ANY_CHAR
        if ch == "x":
            self.hex_escape()
            return _ANY_CHAR
        if ch.isascii() and not ch.isalnum():
            return _literal(ch)
        raise Unsupported(f"escape \\{ch}")

    def unicode_class_name(self) -> None:
        if self.peek() == "{":
            end = self.p.find("}", self.i)
            if end < 0:
                raise Unsupported("unterminated \\p{")
            self.i = end + 1
        elif self.peek():
            self.i += 1
        else:
            raise Unsupported("bare \\p")

    def hex_escape(self) -> None:
        if self.peek() == "{":
            end = self.p.find("}", self.i)
            if end < 0:
                raise Unsupported("unterminated \\x{")
            self.i = end + 1
        else:
            self.i += 2

    def char_class(self) -> _Info:
        """[...]: a few plain characters become alternatives; anything richer is one unknown char."""
        negated = self.peek() == "^"
        if negated:
            self.i += 1
        chars: set[str] = set()
        simple = not negated
        first = True
        while True:
            ch = self.peek()
            if not ch:
                raise Unsupported("unterminated class")
            if ch == "]" and not first:
                self.i += 1
                break
            first = False
            if ch == "[" and self.p.startswith("[:", self.i):
                end = self.p.find(":]", self.i + 2)
                if end < 0:
                    raise Unsupported("unterminated [:class:]")
                self.i = end + 2
                simple = False
                continue
            self.i += 1
            if ch == "\\":
                esc = self.peek()
                self.i += 1
                if esc in ("p", "P"):
                    self.unicode_class_name()
                    simple = False
                    continue
                if esc == "x":
                    self.hex_escape()
                    simple = False
                    continue
                if not esc or esc.isalnum():
                    simple = False  # \d, \n, ... or something unknown: not a plain char
                    if not esc:
                        raise Unsupported("trailing backslash in class")
                    continue
                ch = esc
            if self.peek() == "-" and self.p[self.i + 1 : self.i + 2] not in ("]", ""):
                self.i += 1  # a range a-z
                hi = self.peek()
                self.i += 1
                if hi == "\\":
                    self.i += 1
                simple = False
                continue
            if not ch.isascii() or not ch.isprintable():
                simple = False
            chars.add(ch.lower())
        if simple and chars and len(chars) <= _MAX_CLASS:
            return _Info(frozenset(chars), None)
        return _ANY_CHAR


def _literal(ch: str) -> _Info:
    if not ch.isascii() or not ch.isprintable():
        return _ANY_CHAR
    return _Info(frozenset({ch.lower()}), None)


def _selective(strings: frozenset[str]) -> bool:
    """Rare enough to be worth a filter: long strings, or ones with a rare sign like `?` or `$`."""
    return all(len(x) >= MIN_LITERAL or any(ch in _RARE_SIGNS for ch in x) for x in strings)


def required_literals(pattern: str) -> tuple[frozenset[str], ...] | None:
    """Sets of lowercase ASCII strings: every match of `pattern` contains one string of each set.

    None when the pattern can match without any string of MIN_LITERAL characters or more, or
    uses syntax this analysis does not model: the caller must then run the pattern always.
    Several sets (at most _MAX_SETS, the longest strings first) let `\b(raises|cuts)
    .*\b(outlook|guidance)` wait for a verb and a noun rather than either.
    """
    try:
        info = _Parser(pattern).parse()
    except (Unsupported, IndexError):
        return None
    sets = {s for s in (_as_req(info), *info.every) if s and "" not in s and _selective(s)}
    if not sets:
        return None
    best = sorted(sets, key=lambda s: (_score(s), sorted(s)), reverse=True)[:_MAX_SETS]
    # A string that contains another of its set adds nothing: the shorter one occurs too.
    return tuple(frozenset(s for s in req if not any(t != s and t in s for t in req)) for req in best)
