"""The parsed shape of a rule's `when` / `unless` tree.

Kept separate from the loader (which knows YAML) and the matcher (which knows automata) so each
can change without the other: the loader builds these, the matcher compiles them.
"""

from __future__ import annotations

from dataclasses import dataclass

# `lead` is the beginning of the summary (textnorm.lead_length): "deal language in the lead"
# without `^.{0,300}` regexes, which are dear to run and dearer to explain.
TEXT_FIELDS: tuple[str, ...] = ("headline", "summary", "text", "lead")
ITEM_FIELDS: tuple[str, ...] = (*TEXT_FIELDS, "source", "url", "filing", "tickers")
FIELDS: tuple[str, ...] = (*ITEM_FIELDS, "price")
COMBINATORS: tuple[str, ...] = ("all", "any", "not")

PRICE_METRICS: tuple[str, ...] = (
    "change_pct",
    "gap_pct",
    "volume_ratio",
    "high_days",
    "low_days",
    "move_since_story_pct",
    "last",
    "prev_close",
)
COMPARISONS: tuple[str, ...] = ("gte", "gt", "lte", "lt", "eq", "abs_gte", "abs_gt", "abs_lte", "abs_lt")


@dataclass(frozen=True, slots=True)
class Phrases:
    """Any of the phrases, as whole words, in the field (`text` = headline or summary; `lead` = summary start)."""

    field: str
    phrases: tuple[str, ...]  # normalized: lowercased, whitespace collapsed


@dataclass(frozen=True, slots=True)
class AllWords:
    """Every word present somewhere in the field, as whole words, in any order."""

    field: str
    words: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Regex:
    """Any of the RE2 patterns found in the field (case-insensitive unless the pattern says `(?-i)`)."""

    field: str
    patterns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class InSet:
    """`source`, `tickers` or `url` value among a fixed set (tickers: any of the item's tickers)."""

    field: str
    values: frozenset[str]


@dataclass(frozen=True, slots=True)
class Filing:
    """SEC form type and/or 8-K item numbers. Both given: both must hold."""

    forms: tuple[str, ...]  # uppercase; trailing "*" = prefix
    items: frozenset[str]


@dataclass(frozen=True, slots=True)
class Compare:
    """One numeric comparison of one price metric, e.g. change_pct abs_gte 5."""

    metric: str
    op: str
    value: float


@dataclass(frozen=True, slots=True)
class Price:
    comparisons: tuple[Compare, ...]
    window: str | None = None


@dataclass(frozen=True, slots=True)
class All:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Any_:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


Node = Phrases | AllWords | Regex | InSet | Filing | Price | All | Any_ | Not

LITERAL_NODES = (Phrases, AllWords, Regex)


def walk(node: Node) -> list[Node]:
    """Every node of the tree, parents first."""
    out: list[Node] = [node]
    if isinstance(node, All | Any_):
        for c in node.children:
            out.extend(walk(c))
    elif isinstance(node, Not):
        out.extend(walk(node.child))
    return out


def compare(op: str, actual: float, limit: float) -> bool:
    if op.startswith("abs_"):
        actual = abs(actual)
        op = op[4:]
    if op == "gte":
        return actual >= limit
    if op == "gt":
        return actual > limit
    if op == "lte":
        return actual <= limit
    if op == "lt":
        return actual < limit
    return actual == limit
