"""Text hygiene for untrusted feed text: what is shown is what is there.

A feed can hide text (zero-width characters, the invisible Unicode "tag" letters), reorder what
the reader sees (right-to-left overrides: "moc.elppa" shown as "apple.com") or break lines in a
mail subject (CR, LF, NEL, U+2028). `clean_text` removes all of these, so a title or summary reads
the same in a terminal, a mail client and a browser, and one line stays one line.

Removed: every control character (Unicode category Cc) except the white space ones, every format
character (Cf: bidi embeddings, overrides and isolates U+202A-U+202E and U+2066-U+2069, the marks
U+200E/U+200F/U+061C, zero-width space U+200B, word joiner U+2060, BOM U+FEFF, soft hyphen U+00AD,
tag characters U+E0000-U+E007F, ...) except the zero-width joiner and non-joiner (U+200C/U+200D,
which Persian, the Indic scripts and emoji need and which reorder nothing), lone surrogates (they
cannot be encoded as UTF-8 at all) and the non-characters U+FFFE/U+FFFF. Every run of white space,
line and paragraph separators included, becomes one space. The result is NFC, so "é" typed two
ways compares equal. The function is idempotent.
"""

from __future__ import annotations

import re
import unicodedata

_KEEP_FORMAT = frozenset("\u200c\u200d")  # ZWNJ, ZWJ: shape letters and emoji, reorder nothing
_WS = re.compile(r"\s+")


def is_hidden(ch: str) -> bool:
    """True for a character `clean_text` never lets through (white space aside)."""
    if ch in _KEEP_FORMAT:
        return False
    category = unicodedata.category(ch)
    return category in ("Cf", "Cs") or (category == "Cc" and not ch.isspace()) or ch in "\ufffe\uffff"


def _hidden_class() -> re.Pattern[str]:
    """One character class of every hidden character, so clean text is checked in one C-speed scan.

    Built from the Unicode database of this Python rather than written out, so a format character
    added in a later Unicode version is covered too. Planes 2-13 hold ideographs and nothing
    unassigned is Cf, so the BMP, plane 1 and plane 14 (tags, variation selectors) are enough.
    """
    ranges: list[tuple[int, int]] = []
    for plane in (range(0, 0x20000), range(0xE0000, 0xE1000)):
        for code in plane:
            if is_hidden(chr(code)):
                if ranges and ranges[-1][1] == code - 1:
                    ranges[-1] = (ranges[-1][0], code)
                else:
                    ranges.append((code, code))
    body = "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)
    return re.compile(f"[{body}]")


_HIDDEN = _hidden_class()


def drop_hidden(text: str) -> str:
    """Only the removal step of `clean_text`, for markup that is parsed afterwards (nh3 cannot
    even encode a lone surrogate)."""
    return text if text.isascii() or text.isprintable() else _HIDDEN.sub("", text)


def clean_text(text: str) -> str:
    """One line of visible text: controls, bidi and invisible format characters gone, NFC."""
    if not text:
        return ""
    if text.isprintable():  # no controls, format characters or separators but " ": nothing to remove
        text = (_WS.sub(" ", text) if "  " in text else text).strip()
    else:
        text = _WS.sub(" ", _HIDDEN.sub("", text)).strip()
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    return text
