"""Company names and aliases found in text: word-bounded, case-aware, one pass for any watchlist.

Rules (docs/tickers.md):
- A name counts on word boundaries only: "Microsoft" is not in "Microsofty". CJK names have no
  word boundaries, so any occurrence counts ("金山云").
- Case: matching ignores case ("MICROSOFT", "Kingsoft cloud"), but a name written with capitals in
  the watchlist must have at least one capital where it is found: "Apple" and "APPLE" name the
  company, "apple pie" does not. A name written all in lower case ("adidas") matches any case.
- Short forms: "Kingsoft Cloud Holdings Limited" also answers to "Kingsoft Cloud", "Amazon.com,
  Inc." to "Amazon.com" and "Amazon", "The Gap, Inc." to "Gap", "Eli Lilly and Company" to
  "Eli Lilly". A derived short form that is a single ordinary word ("Gap", "Sea", "Visa") is weak:
  it counts only when the symbol is also written in the same item. Names and aliases the operator
  wrote are never weak.
- A name inside a longer matched name belongs to the longer one: "Apple" in "Apple Hospitality
  REIT" is not Apple Inc.

All names go into one Aho-Corasick automaton (pyahocorasick) over case-folded text, so matching
costs one pass over the text however many companies are watched (a 5,000-name regex alternation
managed ~150 items/s; the automaton is linear in the text).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import ahocorasick

from daemon.ingest.symbols import COMMON_WORDS, words

_CORPORATE_SUFFIXES = words(
    """
    inc inc. incorporated corp corp. corporation co co. company companies ltd ltd. ltd.. limited plc
    llc l.l.c. lp l.p. sa s.a. ag nv n.v. se a/s asa ab oyj spa s.p.a. bv b.v. kgaa holdings holding
    group international adr ads common shares stock & and
    """
)
_SHARE_CLASS = re.compile(r",?\s+class\s+[a-z]\b.*$", re.I)
_DOT_COM = re.compile(r"^(\w[\w\-]*)\.com$", re.I)


@dataclass(frozen=True, slots=True)
class NameForm:
    text: str
    weak: bool = False  # a derived single ordinary word: needs the symbol in the same item


def name_forms(name: str) -> list[NameForm]:
    """The legal name and the short forms news uses for it."""
    name = " ".join(name.split())
    if not name:
        return []
    forms = [NameForm(name)]
    words = _SHARE_CLASS.sub("", name).replace(",", " ").split()
    if len(words) > 1 and words[0].lower() == "the":
        words = words[1:]
    while len(words) > 1 and words[-1].lower() in _CORPORATE_SUFFIXES:
        words.pop()
    short = " ".join(words)
    candidates = [short]
    dot_com = _DOT_COM.match(short)
    if dot_com:
        candidates.append(dot_com.group(1))
    seen = {name.casefold()}
    for text in candidates:
        if len(text) < 3 or text.casefold() in seen:
            continue
        seen.add(text.casefold())
        forms.append(NameForm(text, weak=" " not in text and text.upper() in COMMON_WORDS))
    return forms


@dataclass(frozen=True, slots=True)
class _Entry:
    symbol: str
    weak: bool
    needs_capital: bool


class NameMatcher:
    """Names -> watched symbols; `find` returns (strong, weak) symbol sets for one text."""

    def __init__(self, names: dict[str, list[tuple[str, bool]]]) -> None:
        """`names`: name as written -> [(symbol, weak)]."""
        by_key: dict[str, list[_Entry]] = {}
        for name, owners in names.items():
            key = fold(name)
            if not key:
                continue
            needs_capital = any(c.isupper() for c in name)
            by_key.setdefault(key, []).extend(_Entry(s, weak, needs_capital) for s, weak in owners)
        self._automaton = ahocorasick.Automaton()
        for key, entries in by_key.items():
            self._automaton.add_word(key, (len(key), _has_cjk(key), tuple(entries)))
        self._empty = not by_key
        if not self._empty:
            self._automaton.make_automaton()

    def find(self, text: str) -> tuple[set[str], set[str]]:
        if self._empty or not text:
            return set(), set()
        folded, offsets = fold_with_offsets(text)
        last = len(folded) - 1
        hits: list[tuple[int, int, tuple[_Entry, ...]]] = []
        for end, (length, cjk, entries) in self._automaton.iter(folded):
            start = end - length + 1
            if not cjk and (
                (start > 0 and _word_char(folded[start - 1])) or (end < last and _word_char(folded[end + 1]))
            ):
                continue
            span = text[start : end + 1] if offsets is None else text[offsets[start] : offsets[end] + 1]
            capital = any(c.isupper() for c in span)
            kept = tuple(e for e in entries if capital or not e.needs_capital)
            if kept:
                hits.append((start, end, kept))
        strong: set[str] = set()
        weak: set[str] = set()
        for start, end, entries in hits:
            if any(s <= start and end <= e and (s, e) != (start, end) for s, e, _ in hits):
                continue
            for entry in entries:
                (weak if entry.weak else strong).add(entry.symbol)
        return strong, weak - strong


def fold(text: str) -> str:
    """Case- and width-insensitive form used for names and the text alike."""
    folded, _ = fold_with_offsets(text)
    return folded.strip()


_SPACES = {code: " " for code in range(0x3100) if chr(code).isspace()}


def fold_with_offsets(text: str) -> tuple[str, list[int] | None]:
    """Folded text and, for each folded character, its index in `text` (None: the same index).

    NFKC, case folding, and one space for any white space run. When that keeps the length (nearly
    always: news text is single-spaced by normalize) the whole string is folded at once; otherwise
    character by character, so offsets stay exact where folding changes the length ("ß" -> "ss").
    """
    if text.isascii():
        folded = text.lower().translate(_SPACES)
    else:
        folded = unicodedata.normalize("NFKC", text).casefold().translate(_SPACES)
    if len(folded) == len(text) and "  " not in folded:
        return folded, None
    out: list[str] = []
    offsets: list[int] = []
    previous_space = False
    for index, ch in enumerate(text):
        for piece in unicodedata.normalize("NFKC", ch).casefold():
            if piece.isspace():
                if previous_space:
                    continue
                piece = " "
            previous_space = piece == " "
            out.append(piece)
            offsets.append(index)
    return "".join(out), offsets


def _has_cjk(s: str) -> bool:
    return any(
        "\u3040" <= ch <= "\u30ff"
        or "\u3400" <= ch <= "\u9fff"
        or "\uac00" <= ch <= "\ud7af"
        or "\uf900" <= ch <= "\ufaff"
        for ch in s
    )


def _word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"
