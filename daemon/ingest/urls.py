"""Canonical form of a feed link: one article, one URL, whichever feed or campaign it came through.

Pure and total: any text gives a URL or "", never an exception, and the result is a fixed point
(canonical_url(canonical_url(u)) == canonical_url(u)), so a stored URL compares equal to the same
link seen again. What changes, and why:

- scheme and host lower-case, a trailing dot on the host dropped, internationalised hosts in their
  ASCII (punycode) form, default ports (http 80, https 443) dropped: all name the same server;
- the fragment dropped (a place on the page, not another page), except "#!" and "#/" routes that
  single-page sites use as the address of the document itself;
- user names and passwords dropped: news links never need them and "https://bank.com@evil.example/"
  is how a link hides where it goes;
- parameters that identify the click rather than the document dropped (utm_*, fbclid, gclid, ...);
  the rest keep their order and their exact encoding, since reordering or re-encoding would be a
  guess about the server;
- characters a URL may not carry (spaces, controls, bidi marks, non-ASCII) percent-encoded, so a
  link is one printable ASCII token.

Anything but http(s), or a host that is not a host name or an IP literal, gives "".
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote_plus, urlsplit, urlunsplit

# Query parameters that identify the click, not the document. Keeping them would give one story
# several uids (one per campaign or feed it was seen in).
TRACKING_PARAMS = frozenset(
    {
        "fbclid",  # Facebook
        "gclid",  # Google Ads
        "dclid",
        "gbraid",
        "wbraid",
        "gclsrc",
        "_ga",  # Google Analytics cross-domain linker
        "_gl",
        "msclkid",  # Microsoft Ads
        "yclid",  # Yandex
        "igshid",  # Instagram
        "twclid",  # Twitter/X ads
        "ttclid",  # TikTok ads
        "li_fat_id",  # LinkedIn
        "mc_cid",  # Mailchimp
        "mc_eid",
        "_hsenc",  # HubSpot
        "_hsmi",
        "hsctatracking",
        "mkt_tok",  # Marketo
        "oly_enc_id",  # Omeda
        "oly_anon_id",
        "vero_id",
        "vero_conv",
        "ncid",  # Yahoo / AOL
        "cmpid",  # campaign id (WSJ, Barron's, MarketWatch)
        "ocid",  # MSN
        "smid",  # New York Times share id
        "s_cid",  # Adobe
        "wt.mc_id",  # Webtrends
        "wt.mc_ev",
        "sr_share",
        "ref_src",  # Twitter: ?ref_src=twsrc%5Etfw
        "ref_url",
        "guccounter",  # Yahoo consent round-trip
        "guce_referrer",
        "guce_referrer_sig",
        "at_medium",  # AT Internet
        "at_campaign",
        "feedtype",  # Reuters: ?feedType=RSS&feedName=businessNews
        "feedname",
        "__twitter_impression",
        "rss",  # ?rss=1 marks the feed click on many news sites
    }
)
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_")  # Google/FeedBurner utm_*, Matomo/Piwik pk_* and mtm_*
# `ref` is tracking when it names the channel ("?ref=rss"); elsewhere it is content
# (a git ref, a referral code on a shop), so only these values are dropped.
_REF_CHANNELS = frozenset(
    {
        "rss",
        "rss2",
        "feed",
        "feeds",
        "feedburner",
        "newsletter",
        "email",
        "mail",
        "twitter",
        "facebook",
        "linkedin",
        "social",
        "share",
        "hp",
        "home",
        "homepage",
        "nav",
        "sidebar",
        "related",
        "yahoo",
        "google",
        "googlenews",
        "flipboard",
        "hn",
        "reddit",
    }
)
_HOST_ASCII = re.compile(r"^[a-z0-9_](?:[a-z0-9_.\-]*[a-z0-9_])?$")
_IPV6 = re.compile(r"^[0-9a-f:.]+(?:%[0-9a-z._~\-]+)?$")
# Characters kept as they are in a path and a query (RFC 3986 unreserved, sub-delims, ":@/?" and
# "%" so existing escapes stay escapes); anything else is percent-encoded.
_PATH_SAFE = "/:@!$&'()*+,;=~-._%"
_QUERY_SAFE = _PATH_SAFE + "?"


def canonical_url(link: str) -> str:
    """Comparable, clickable form of a link; "" for anything but a plain http(s) URL."""
    link = link.strip()
    if not link:
        return ""
    try:
        parts = urlsplit(link)
        port = parts.port
        hostname = parts.hostname
    except ValueError:  # bad IPv6 brackets, a port out of range, NFKC tricks in the host
        return ""
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not hostname:
        return ""
    host = _host(hostname)
    if not host:
        return ""
    if port is not None and not (scheme == "http" and port == 80) and not (scheme == "https" and port == 443):
        host = f"{host}:{port}"
    path = quote(parts.path, safe=_PATH_SAFE) or "/"
    query = _strip_tracking(quote(parts.query, safe=_QUERY_SAFE))
    fragment = parts.fragment if parts.fragment.startswith(("!", "/")) else ""
    return urlunsplit((scheme, host, path, query, quote(fragment, safe=_QUERY_SAFE)))


def is_tracking_param(key: str, value: str) -> bool:
    """True for a query parameter that says how the link was reached, not what it points to."""
    k = key.lower()
    if k in TRACKING_PARAMS or k.startswith(TRACKING_PREFIXES):
        return True
    v = value.lower()
    if k == "ref":
        return v in _REF_CHANNELS
    # Seeking Alpha: ?source=feed_symbol_MSFT marks which feed was clicked, not the article
    return k == "source" and v.startswith("feed_")


def _strip_tracking(query: str) -> str:
    """The query without tracking parameters; the others keep their exact bytes and order."""
    if not query:
        return ""
    pieces = query.split("&")
    kept = [p for p in pieces if p and not _tracking_piece(p)]
    if len(kept) == len(pieces):
        return query
    return "&".join(kept)


def _tracking_piece(piece: str) -> bool:
    key, _, value = piece.partition("=")
    return is_tracking_param(unquote_plus(key), unquote_plus(value))


def _host(hostname: str) -> str:
    """Lower-case ASCII host, or "" when it is neither a DNS name nor an IP literal."""
    host = hostname.lower().rstrip(".")
    if ":" in host:  # urlsplit has removed the brackets of an IPv6 literal
        return f"[{host}]" if _IPV6.match(host) else ""
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            return ""
    return host if _HOST_ASCII.match(host) else ""
