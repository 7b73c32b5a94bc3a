"""Ticker evidence written in the text itself: cashtags, exchange prefixes, symbols, EDGAR CIKs.

Each function returns the codes as written (upper-cased); TickerLinker decides which watched
company a code names. Pure regular expressions, no watchlist knowledge.

- Cashtag: "$KC", "$msft", "$BRK.B". Not money: "$5", "$5.2bn", "$0.12", "US$20", "HK$3".
- Exchange prefix: "(NASDAQ: KC)", "(NYSE:IBM)", "NYSE: IBM", "Nasdaq: KC", "NYSE American: AMC",
  "HKEX: 3896", "(HKEX: 03896)". The exchange is matched in any case, the symbol only in capitals
  or digits, so "Nasdaq: now at a record" is not ServiceNow.
- Parenthesised symbol: "Kingsoft Cloud (KC)", "ServiceNow (NOW)", the wires' "Apple <AAPL>".
- Bare symbol: an upper-case word of one to five letters, not part of "KC-135" or "U.S.".
- CIK: the company number in an EDGAR address (".../edgar/data/1795589/...", "?CIK=0001795589"),
  "CIK 1795589" in text, or the zero-padded "(0001795589)" of EDGAR's filing titles.
"""

from __future__ import annotations

import re
import string
from urllib.parse import unquote

_CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z][A-Za-z0-9]{0,5}(?:[.\-][A-Za-z]{1,2})?)(?![\w])")
# Exchanges as news and wires write them. The long names are matched in any case ("Nasdaq"),
# the abbreviations only in capitals: "Our aim: IBM" is not London's AIM market.
_EXCHANGES_ANY_CASE = (
    r"NASDAQ(?:\s?(?:GS|GM|CM|Global\sSelect(?:\sMarket)?|Global\sMarket|Capital\sMarket))?",
    r"NYSE(?:\s(?:American|Arca|MKT))?",
    r"AMEX|Euronext|XETRA",
    r"OTC(?:QX|QB|\sPink|\sMarkets)?",
)
_EXCHANGES_CAPITALS = r"TSXV?|TSX-V|CSE|NEO|ASX|LSE|LON|AIM|HKEX|HKSE|SEHK|SSE|SZSE|SGX|TSE|TYO|KRX|NSE|BSE|SIX|ETR|FWB"
_EXCHANGE_TAG = re.compile(
    r"(?<![\w$])((?i:" + "|".join(_EXCHANGES_ANY_CASE) + r")|" + _EXCHANGES_CAPITALS + r")"
    r"\s*:\s*([A-Z][A-Z0-9]{0,5}(?:[.\-][A-Z0-9]{1,3})?|\d{1,6})\b"
)
_PAREN_SYMBOL = re.compile(r"[(<\[]\s*([A-Z]{1,5}(?:[.\-][A-Z]{1,2})?)\s*[)>\]]")
_BARE_SYMBOL = re.compile(r"(?<![\w$.\-&/])([A-Z]{1,5})(?![\w\-&/]|\.[A-Za-z])")
_CAPITALS = string.ascii_uppercase
_SMALL = string.ascii_lowercase
_EDGAR_HOST = re.compile(r"^https?://(?:www\.)?sec\.gov/", re.I)
_EDGAR_DATA = re.compile(r"/edgar/data/0*(\d{1,10})(?:/|$)", re.I)
_CIK_PARAM = re.compile(r"[?&]cik=0*(\d{1,10})(?:&|$)", re.I)
# possessive quantifiers: a run of blanks is read once, never re-split between the \s*'s
_CIK_TEXT = re.compile(r"\bCIK\s*+(?:No\.?|number)?\s*+[:#=]?\s*+0*+(\d{1,10})\b", re.I)
_CIK_PADDED = re.compile(r"\((000\d{7})\)")


def cashtags(text: str) -> list[str]:
    if "$" not in text:
        return []
    return [m.group(1).upper() for m in _CASHTAG.finditer(text)]


def exchange_tags(text: str) -> list[tuple[str, str]]:
    """(exchange as written, upper-cased; code) pairs."""
    if ":" not in text:
        return []
    return [(" ".join(m.group(1).upper().split()), m.group(2)) for m in _EXCHANGE_TAG.finditer(text)]


def parenthesised_symbols(text: str) -> list[str]:
    if "(" not in text and "<" not in text and "[" not in text:
        return []
    return [m.group(1) for m in _PAREN_SYMBOL.finditer(text)]


def bare_symbols(text: str) -> list[str]:
    """Upper-case words that could be symbols; nothing from an ALL-CAPS text, where every word would."""
    if shouting(text):
        return []
    return [m.group(1) for m in _BARE_SYMBOL.finditer(text)]


def ciks(text: str, *urls: str) -> set[str]:
    """EDGAR company numbers, zero-padded to ten digits as the watchlist stores them."""
    found: set[str] = set()
    if "(000" in text:
        found.update(m.group(1) for m in _CIK_PADDED.finditer(text))
    if "cik" in text.lower():
        found.update(m.group(1) for m in _CIK_TEXT.finditer(text))
    for url in urls:
        if url and _EDGAR_HOST.match(url):
            address = unquote(url)
            found.update(m.group(1) for m in _EDGAR_DATA.finditer(address))
            found.update(m.group(1) for m in _CIK_PARAM.finditer(address))
    return {c.lstrip("0").zfill(10) for c in found}


def shouting(text: str) -> bool:
    """An ALL-CAPS text: more than 80% of at least 12 ASCII letters are capitals."""
    capitals = sum(map(text.count, _CAPITALS))
    if capitals < 10:
        return False
    letters = capitals + sum(map(text.count, _SMALL))
    return letters >= 12 and capitals > 0.8 * letters
