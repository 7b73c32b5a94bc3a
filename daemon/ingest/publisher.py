"""Aggregator titles: "Kingsoft Cloud posts results - Reuters" is Reuters' headline, shown as such.

Google News (and Bing, MSN, Yahoo's news pages) append the publisher to every title. Left in, the
suffix defeats clustering (the same story from Reuters directly and via Google News gets two
titles), pollutes rule matching, and hides who wrote the story behind the aggregator's name.

A " - X" (or " | X", " – X", " — X") suffix is taken as a publisher only with evidence, because
plenty of real titles end that way ("Microsoft (MSFT) Q1 2018 Results - Earnings Call Transcript"):
- the link goes through a known aggregator (news.google.com, ...), or
- the summary repeats the headline and ends with the same name (Google News' description is the
  headline then `<font>Reuters</font>`), or
- the name is the link's own site ("... - Reuters" linking to reuters.com, "... - The Motley Fool"
  linking to fool.com).
and X must look like a name: at most six words and 40 characters, starting with a capital or a
digit (or a domain such as "investing.com"), no sentence punctuation.

The first two mean the item came through an aggregator: the publisher becomes the source shown to
readers ("Reuters", not "Google News"), since that is who they trust or not; the configured source
still owns the item (its source_id). In the third the feed is the publisher's own, so its
configured label stays.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

AGGREGATOR_HOSTS = frozenset(
    {
        "news.google.com",
        "news.yahoo.com",
        "www.bing.com",
        "bing.com",
        "www.msn.com",
        "msn.com",
        "flipboard.com",
        "www.newsnow.co.uk",
    }
)
_SUFFIX = re.compile(r"\s+[-–—|]\s+")
_NAME = re.compile(r"^(?:[A-Z0-9][\w.&'’!+\-]*|[a-z0-9][a-z0-9\-]*\.[a-z]{2,})(?:\s+[\w.&'’!+\-]+){0,5}$")
_DOMAIN_NOISE = frozenset({"co", "com", "net", "org", "gov", "ac", "edu"})
_SQUASH = re.compile(r"[^0-9a-z]+")
PUBLISHER_MAX = 40


@dataclass(frozen=True, slots=True)
class Headline:
    title: str
    publisher: str = ""  # "" when the title carried no publisher suffix
    via_aggregator: bool = False  # the publisher is not the feed's own site


def split_publisher(title: str, *, url: str, summary: str) -> Headline:
    """Headline without its publisher suffix, and the publisher, when the evidence says so."""
    separators = list(_SUFFIX.finditer(title))
    if not separators:
        return Headline(title)
    match = separators[-1]
    headline, publisher = title[: match.start()].strip(), title[match.end() :].strip()
    if len(headline) < 10 or " " not in headline or not _looks_like_name(publisher):
        return Headline(title)
    host = _host(url)
    if host in AGGREGATOR_HOSTS or _repeats(summary, headline, publisher):
        return Headline(headline, publisher, via_aggregator=True)
    if _names_site(publisher, host):
        return Headline(headline, publisher, via_aggregator=False)
    return Headline(title)


def summary_without_headline(summary: str, headline: Headline) -> str:
    """ "" when the summary only repeats the headline and the publisher (Google News' description)."""
    if not headline.publisher:
        return summary
    repeat = _squash(f"{headline.title} {headline.publisher}")
    return "" if _squash(summary) == repeat else summary


def _looks_like_name(text: str) -> bool:
    return 0 < len(text) <= PUBLISHER_MAX and not text.endswith(("?", ":", ",")) and bool(_NAME.match(text))


def _repeats(summary: str, headline: str, publisher: str) -> bool:
    """The summary holds the headline and ends with the publisher, as Google News' descriptions do."""
    text, head, tail = _squash(summary), _squash(headline), _squash(publisher)
    return bool(head and tail) and head in text and text.endswith(tail) and len(text) >= len(head) + len(tail)


def _names_site(publisher: str, host: str) -> bool:
    """ "Reuters" for reuters.com, "The Motley Fool" for fool.com, "Investing.com" for investing.com."""
    labels = [label for label in host.split(".") if label]
    if len(labels) < 2:
        return False
    site = labels[-2]
    if site in _DOMAIN_NOISE and len(labels) >= 3:
        site = labels[-3]
    name = _squash(publisher)
    return len(site) >= 4 and len(name) >= 4 and (site in name or name in site)


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _squash(text: str) -> str:
    return _SQUASH.sub("", text.casefold())
