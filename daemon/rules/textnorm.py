"""Text as the matcher sees it: whitespace collapsed, lowercased, with Unicode word boundaries.

Whitespace runs (line breaks of wrapped wire copy included) count as one space for phrases and
regexes, so an operator writes "net income" and it matches "net\\n    income". Offsets found in
the collapsed text are mapped back to the original field only for rules that fired.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# Scripts written without spaces between words: a word boundary cannot be asked of them,
# otherwise a phrase like 金山云 would never match inside a sentence.
_NOSPACE_RANGES: tuple[tuple[int, int], ...] = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x2E80, 0x9FFF),  # CJK radicals, kana, CJK unified
    (0xA000, 0xA4CF),  # Yi
    (0xF900, 0xFAFF),  # CJK compatibility
    (0xFF66, 0xFF9F),  # half-width katakana
    (0x20000, 0x3FFFF),  # CJK extensions
)

_NONSPACE = re.compile(r"\S+")


def is_nospace_script(ch: str) -> bool:
    o = ord(ch)
    if o < 0x0E00:
        return False
    return any(lo <= o <= hi for lo, hi in _NOSPACE_RANGES)


def is_word_char(ch: str) -> bool:
    """A character that glues to its neighbour into one word (Unicode \\w, minus no-space scripts)."""
    return (ch.isalnum() or ch == "_") and not is_nospace_script(ch)


def is_collapsed(text: str) -> bool:
    """True when collapse() would return the text unchanged (the usual one-line feed summary).

    Every whitespace character but the plain space is non-printable, so a printable text
    without double or edge spaces has nothing to collapse. This check costs a fraction of the
    split/join it avoids, and it tells the explainer that offsets need no mapping.
    """
    return text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " "


def collapse(text: str) -> str:
    if is_collapsed(text):
        return text
    return " ".join(text.split())


LEAD_CHARS = 300


def lead_length(collapsed: str) -> int:
    """Length of the `lead` field: the collapsed summary up to LEAD_CHARS, cut at a word boundary.

    A summary of at most LEAD_CHARS characters is its own lead. A longer one is cut at the last
    space at or before position LEAD_CHARS (so the lead keeps whole words and ends on one); a
    text without any such space (Chinese, a giant token) is cut at LEAD_CHARS characters. The
    lead is a prefix of the collapsed summary, so its offsets are summary offsets.
    """
    if len(collapsed) <= LEAD_CHARS:
        return len(collapsed)
    cut = collapsed.rfind(" ", 0, LEAD_CHARS + 1)
    return cut if cut > 0 else LEAD_CHARS


def lower_same_length(text: str) -> str:
    """Lowercase without changing length, so offsets stay valid (e.g. 'İ'.lower() has 2 chars)."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(c if len(lc := c.lower()) != 1 else lc for c in text)


def normalize_phrase(phrase: str) -> str:
    return lower_same_length(collapse(phrase))


def to_original(original: str, start: int, end: int, collapsed: str | None = None) -> tuple[int, int]:
    """Map a [start, end) span of collapse(original) back to offsets in original.

    A span that starts on a collapsed space starts at the next word; one that ends just after
    a collapsed space ends where the next word starts (the whole whitespace run is in it).
    Walks only the whitespace runs collapsing shortened, not every word.
    """
    # A collapsed text shorter than the original was changed: no need to ask again.
    if (collapsed is None or len(collapsed) == len(original)) and is_collapsed(original):
        return start, end  # collapsing changed nothing
    c = collapse(original) if collapsed is None else collapsed
    n = len(c)
    if n == 0 or start >= n:
        return len(original), len(original)
    ps = start + 1 if c[start] == " " else start
    if end > n:
        o_start = _original_positions(original, [ps])[0]
        return o_start, max(o_start, len(original))
    if end <= 0:
        pe, plus = 0, 0
    elif c[end - 1] == " ":
        pe, plus = end, 0
    else:
        pe, plus = end - 1, 1
    o_start, o_end = _original_positions(original, [ps, pe])
    return o_start, max(o_start, o_end + plus)


_LONG_RUN = re.compile(r"\s{2,}")  # whitespace collapse() shortens; a lone \n only becomes a space
_WS_TO_SPACE = bytes.maketrans(b"\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f", b" " * 9)  # str.isspace() in ASCII


def _long_runs(original: str, pos: int) -> Iterator[tuple[int, int]]:
    """Spans of the runs of two or more whitespace characters in original, from pos on.

    ASCII text (most feeds) is searched as bytes with its whitespace made spaces: find() for a
    double space runs in C, where the `re` scan tests every character.
    """
    if not original.isascii():
        for m in _LONG_RUN.finditer(original, pos):
            yield m.span()
        return
    data = original.encode("ascii").translate(_WS_TO_SPACE)
    n = len(data)
    i = data.find(b"  ", pos)
    while i >= 0:
        j = i + 2
        while j < n and data[j] == 32:
            j += 1
        yield i, j
        i = data.find(b"  ", j)


def _original_positions(original: str, positions: list[int]) -> list[int]:
    """Original offsets of characters (never collapsed spaces) at these collapsed positions."""
    lead = len(original) - len(original.lstrip())
    shift = lead
    order = sorted(range(len(positions)), key=positions.__getitem__)
    out = [0] * len(positions)
    k = 0
    for a, b in _long_runs(original, lead):
        if b == len(original):
            break  # trailing whitespace: nothing after it
        sep = a - shift  # where the run's single space sits in the collapsed text
        while k < len(order) and positions[order[k]] < sep:
            out[order[k]] = positions[order[k]] + shift
            k += 1
        if k == len(order):
            return out
        shift += b - a - 1
    while k < len(order):
        out[order[k]] = positions[order[k]] + shift
        k += 1
    return out
