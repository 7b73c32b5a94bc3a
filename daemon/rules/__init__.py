"""Operator rules: YAML packs -> compiled matcher over items and price events (DESIGN.md §3-4)."""

from __future__ import annotations

from .matcher import RuleSet, load_rules, load_rules_text, watched_scope
from .rule import Rule, parse_duration

__all__ = ["Rule", "RuleSet", "load_rules", "load_rules_text", "parse_duration", "watched_scope"]
