"""Every ```yaml example of docs/rules.md that has a `rules:` key loads: the reference cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from daemon.rules import load_rules_text

DOC = Path(__file__).resolve().parents[2] / "docs" / "rules.md"
BLOCKS = re.findall(r"^```yaml\n(.*?)^```", DOC.read_text(encoding="utf-8"), flags=re.S | re.M)
RULE_BLOCKS = [b for b in BLOCKS if isinstance(yaml.safe_load(b), dict) and "rules" in yaml.safe_load(b)]


def test_doc_has_examples() -> None:
    assert len(RULE_BLOCKS) >= 10


@pytest.mark.parametrize("block", RULE_BLOCKS, ids=[f"block{i}" for i in range(len(RULE_BLOCKS))])
def test_doc_example_loads(block: str) -> None:
    rs = load_rules_text(block, "docs/rules.md")
    assert len(rs) >= 1


def test_every_field_and_matcher_is_documented() -> None:
    from daemon.rules import conditions as c

    text = "\n".join(BLOCKS)
    for word in (*c.FIELDS, *c.COMBINATORS, "unless", "phrases", "all_words", "regex", "in", "form", "items",
                 "cooldown", "severity", "tickers", "abs_gte", "window"):  # fmt: skip
        assert re.search(rf"\b{re.escape(word)}:", text), word
