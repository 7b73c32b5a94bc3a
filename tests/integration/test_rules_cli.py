"""`rules check` / `rules test` contract, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli_rules", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=60,
    )


GOOD = """\
rules:
  - id: results
    category: earnings
    when: {headline: {phrases: [financial results]}}
  - id: kc-only
    category: other
    tickers: [KC]
    when: {summary: {phrases: [cloud]}}
"""


def test_check_ok_default_pack() -> None:
    p = run("check")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("OK: ") and " rules in 10 files" in p.stdout


def test_check_env_dir_and_errors(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    p = run("check", env={"KEYNEWS_RULES_DIR": str(tmp_path)})
    assert (p.returncode, p.stdout.strip()) == (0, "OK: 2 rules in 1 files")
    (tmp_path / "b.yaml").write_text(
        "rules:\n  - id: results\n    category: earnigns\n    when: {headline: {phrases: [x]}}\n"
    )
    p = run("check", str(tmp_path))
    assert p.returncode == 2
    lines = p.stderr.splitlines()
    assert (
        f"{tmp_path / 'b.yaml'}:2:9: duplicate rule id 'results' (first defined at {tmp_path / 'a.yaml'}:2:9)" in lines
    )
    assert any(ln.startswith(f"{tmp_path / 'b.yaml'}:3:15: unknown category 'earnigns' (did you mean") for ln in lines)
    assert p.stdout == ""


def test_check_missing_path_exit_2(tmp_path: Path) -> None:
    p = run("check", str(tmp_path / "none"))
    assert p.returncode == 2 and "no such file" in p.stderr


def test_test_command_contract(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(GOOD)
    inp = tmp_path / "in.jsonl"
    docs = [
        {"id": "a1", "title": "Kingsoft Cloud Reports Q3 Unaudited Financial Results", "body": "", "extra": 1},
        {"id": 2, "title": "Quiet day", "body": "cloud revenue grew"},
        {"id": 3, "title": "Nothing", "body": "at all"},
    ]
    inp.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    p = run("test", "--input", str(inp), "--rules", str(rules))
    assert p.returncode == 0, p.stderr
    out = [json.loads(ln) for ln in p.stdout.splitlines()]
    assert out == [
        {"id": "a1", "categories": ["earnings"], "rules": ["results"]},
        {"id": 2, "categories": ["other"], "rules": ["kc-only"]},  # ticker-scoped rule still tested
        {"id": 3, "categories": [], "rules": []},
    ]
    p = run("test", "--input", str(inp), "--rules", str(rules), "--explain")
    first = json.loads(p.stdout.splitlines()[0])
    assert first["explain"] == [
        {"rule": "results", "field": "headline", "text": "Financial Results", "start": 36, "end": 53}
    ]


def test_test_command_bad_rules_exit_2(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("rules:\n  - id: x\n")
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"id": 1, "title": "t", "body": "b"}\n')
    p = run("test", "--input", str(inp), "--rules", str(tmp_path / "r.yaml"))
    assert p.returncode == 2 and "rule is missing `category`" in p.stderr


def test_test_command_10k_lines(tmp_path: Path) -> None:
    """10,000 inputs in one run against the default pack (no timing assert, but it must finish under the timeout)."""
    inp = tmp_path / "big.jsonl"
    with inp.open("w") as fh:
        for i in range(10_000):
            fh.write(json.dumps({"id": i, "title": f"ACME {i} 1ST QTR NET", "body": "Shr 22 cts vs 15 cts"}) + "\n")
    p = run("test", "--input", str(inp))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 10_000
    assert all("earnings" in json.loads(ln)["categories"] for ln in lines[::997])
