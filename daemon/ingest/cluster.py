"""Near-duplicate stories across sources, so a digest shows one entry with "also reported by".

Two headlines tell the same story when their content words overlap enough (Jaccard on word
sets after dropping stop words and publisher boilerplate like " - Reuters" or "| Nasdaq"). The
threshold is deliberately on the strict side: a missed merge costs one extra line in a digest,
a wrong merge hides a story. Pure: the recent stories come in, ids go out.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from daemon.models import Item

THRESHOLD = 0.6
WINDOW = timedelta(hours=48)

_PUBLISHERS = (
    "reuters|bloomberg|bloomberg\\.com|nasdaq|nasdaq\\.com|yahoo finance|yahoo|marketwatch|cnbc|seeking alpha|"
    "globenewswire|globe newswire|pr newswire|prnewswire|business wire|businesswire|accesswire|benzinga|"
    "the motley fool|motley fool|investing\\.com|barron's|barrons|wsj|the wall street journal|financial times|ft|"
    "associated press|ap|ap news|forbes|zacks|tipranks|morningstar|fox business|cnn business|cnn|"
    "investor's business daily|ibd|thestreet|the street|scmp|south china morning post|caixin|36kr|"
    "sec\\.gov|finviz|investopedia|fierce\\w*|techcrunch|the verge|axios|nikkei asia|nikkei"
)
_TRAILER = re.compile(r"\s+(?:[-–—|:·]|by)\s+(?:" + _PUBLISHERS + r")\s*$", re.IGNORECASE)
_LEADER = re.compile(
    r"^\s*(?:(?:UPDATE\s*\d*|BRIEF|EXCLUSIVE|REFILE|CORRECTED|RPT|BREAKING|WRAPUP\s*\d*)\s*[-:]\s*)+", re.IGNORECASE
)
_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]+")
_WORD = re.compile(r"[^\W_]+(?:['’.][^\W_]+)*")
_STOP = frozenset(
    str.split(
        """
    a an and are as at be been but by for from has have in into is it its of on or over says said
    than that the their this to up was were will with after amid as about new report reports
    reported announces announced inc corp ltd co plc company shares stock"""
    )
)
_ORDINAL = {"first": "1", "second": "2", "third": "3", "fourth": "4"}
_QUARTER = re.compile(r"\b(first|second|third|fourth)[- ]quarter\b")
_SAME_WORD = {"bln": "billion", "bn": "billion", "mln": "million", "mn": "million", "pct": "percent", "%": "percent"}


def _tokens(title: str) -> frozenset[str]:
    text = unicodedata.normalize("NFKC", title)
    for _ in range(2):  # "... - Reuters | Nasdaq"
        text = _TRAILER.sub("", text)
    text = _LEADER.sub("", text).casefold()
    text = _QUARTER.sub(lambda m: "q" + _ORDINAL[m.group(1)], text)
    out: set[str] = set()
    for run in _CJK_RUN.findall(text):  # no spaces in CJK: character bigrams stand in for words
        out.update(run[i : i + 2] for i in range(max(1, len(run) - 1)))
    for word in _WORD.findall(_CJK_RUN.sub(" ", text)):
        word = word.replace("’", "'").removesuffix("'s")
        word = _SAME_WORD.get(word, word)
        if word in _STOP:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]  # results/result, beats/beat: cheap, symmetric stemming
        out.add(word)
    return frozenset(out)


def story_key(title: str) -> str:
    """Order-free content words: equal keys are the same headline give or take boilerplate."""
    return " ".join(sorted(_tokens(title)))


def similarity(a_title: str, b_title: str) -> float:
    return _jaccard(_tokens(a_title), _tokens(b_title))


def same_story(a_title: str, b_title: str) -> bool:
    return _same(_tokens(a_title), _tokens(b_title))


def _weight(tokens: frozenset[str]) -> int:
    """Numbers count double: "Q1 2018 results" and "Q2 2018 results" are different stories."""
    return sum(2 if any(c.isdigit() for c in t) else 1 for t in tokens)


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return _weight(a & b) / _weight(a | b)


def _same(a: frozenset[str], b: frozenset[str]) -> bool:
    if not a or not b:
        return False
    if min(len(a), len(b)) < 3:  # two-word headlines overlap by accident too easily
        return a == b
    return _jaccard(a, b) >= THRESHOLD


@dataclass(slots=True)
class _Story:
    cluster_id: str
    tokens: frozenset[str]
    tickers: frozenset[str]
    at: datetime


class Clusterer:
    """Assigns cluster ids; items assigned here join the index, so one run clusters with itself."""

    def __init__(self, recent: Iterable[tuple[str, str, tuple[str, ...], datetime]]) -> None:
        self._stories: list[_Story] = []
        self._index: dict[str, list[int]] = {}
        for cluster_id, title, tickers, at in recent:
            self._add(_Story(cluster_id, _tokens(title), frozenset(tickers), at))

    def _add(self, story: _Story) -> None:
        n = len(self._stories)
        self._stories.append(story)
        for tok in story.tokens:
            self._index.setdefault(tok, []).append(n)

    def assign(self, item: Item) -> str:
        tokens = _tokens(item.title)
        tickers = frozenset(item.tickers)
        best: tuple[float, str] | None = None
        seen: set[int] = set()
        for tok in tokens:
            for n in self._index.get(tok, ()):
                if n in seen:
                    continue
                seen.add(n)
                story = self._stories[n]
                if abs(story.at - item.published_at) > WINDOW:
                    continue
                if (tickers or story.tickers) and not (tickers & story.tickers):
                    continue  # same words about different companies are different stories
                if not _same(tokens, story.tokens):
                    continue
                score = _jaccard(tokens, story.tokens)
                if best is None or score > best[0]:
                    best = (score, story.cluster_id)
        cluster_id = best[1] if best is not None else item.uid
        self._add(_Story(cluster_id, tokens, tickers, item.published_at))
        return cluster_id
