"""The `keynews` command as an operator runs it: real processes, real files, loopback servers."""

from __future__ import annotations

import email
import os
import signal
import subprocess
import sys
import time
from email import policy
from pathlib import Path

import pytest
from feedserver import FeedServer
from smtpserver import SmtpSink
from workspace import make_workspace, rss, settings_env

REPO = Path(__file__).resolve().parents[2]

FEED = rss(
    [
        (
            "Kingsoft Cloud Reports Third Quarter 2026 Unaudited Financial Results",
            "https://wire.example.com/kc-q3",
            "Kingsoft Cloud Holdings Limited (NASDAQ: KC) announced results.",
        ),
        ("Acme Widgets cuts full-year guidance", "https://wire.example.com/acme", "Acme Widgets Inc. lowered."),
    ]
)


def keynews(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _sources(server: FeedServer) -> str:
    url = server.url("/feed.xml")
    return f"defaults: {{every: 1m, jitter: 0s}}\nsources:\n  - id: wire\n    url: {url}\n    allow_private: true\n"


BAD_RULE = """rules:
  - id: broken
    title: Broken
    category: earnings
    severity: high
    when:
      headline: {phrasez: ["results"]}
"""


def test_poll_once_prints_what_was_stored_and_matched(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.add("/feed.xml", FEED)
    env = settings_env(make_workspace(tmp_path, _sources(feed_server)))
    first = keynews(env, "poll", "--once")
    assert first.returncode == 0, first.stderr
    assert "2 new" in first.stdout
    assert "[KC] Kingsoft Cloud Reports Third Quarter 2026 Unaudited Financial Results  <- results" in first.stdout
    second = keynews(env, "poll", "--once", "--all")
    assert second.returncode == 0
    assert "304 not modified" in second.stdout and "0 new" in second.stdout


@pytest.mark.parametrize("command", [["poll", "--once"], ["run"]])
def test_malformed_rule_file_stops_at_start_with_location(
    tmp_path: Path, feed_server: FeedServer, command: list[str]
) -> None:
    settings = make_workspace(tmp_path, _sources(feed_server))
    (settings.rules_dir / "zz-bad.yaml").write_text(BAD_RULE, encoding="utf-8")
    result = keynews(settings_env(settings), *command, timeout=30)
    assert result.returncode == 2
    assert f"{settings.rules_dir / 'zz-bad.yaml'}:7:18:" in result.stderr
    assert "phrases" in result.stderr  # did-you-mean hint
    assert not (tmp_path / "keynews.db").exists() or feed_server.hits("/feed.xml") == 0


def test_rules_backtest_over_stored_items(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.add("/feed.xml", FEED)
    env = settings_env(make_workspace(tmp_path, _sources(feed_server)))
    assert keynews(env, "poll", "--once").returncode == 0
    result = keynews(env, "rules", "backtest", "--since", "30d")
    assert result.returncode == 0, result.stderr
    assert "2 items stored in the last 30d" in result.stdout
    lines = result.stdout.splitlines()
    results_at = next(i for i, line in enumerate(lines) if line.strip().endswith(" results"))
    assert lines[results_at].split()[0] == "1"
    assert "[KC] Kingsoft Cloud Reports Third Quarter 2026 Unaudited Financial Results" in lines[results_at + 1]
    assert any(line.split() == ["0", "deals"] for line in lines)
    assert keynews(env, "db", "upgrade").stdout.strip() == "database at revision 0002"


GOOD_EXTRA_RULE = """rules:
  - id: extra
    title: Extra
    category: other
    severity: low
    when:
      headline: {phrases: ["weather"]}
"""


def test_sighup_reloads_rules_at_once(tmp_path: Path) -> None:
    settings = make_workspace(tmp_path, "sources: []\n")
    env = settings_env(settings) | {"KEYNEWS_RULES_RELOAD_S": "3600", "KEYNEWS_TICK_SECONDS": "3600"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "run"],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        while not any("keynews running" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        (settings.rules_dir / "extra.yaml").write_text(GOOD_EXTRA_RULE, encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        while not any("rules reloaded" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        assert "rules reloaded: 4 rules" in "".join(lines)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_subscribers_add_list_remove(tmp_path: Path) -> None:
    env = settings_env(make_workspace(tmp_path, "sources: []\n"))
    added = keynews(env, "subscribers", "add", "Ann@Example.com", "--tickers", "KC,acme", "--frequency", "weekly")
    assert added.returncode == 0, added.stderr
    listed = keynews(env, "subscribers", "list")
    assert "ann@example.com" in listed.stdout and "ACME,KC" in listed.stdout and "weekly" in listed.stdout
    bad = keynews(env, "subscribers", "add", "b@example.com", "--tickers", "KC", "--frequency", "hourly")
    assert bad.returncode == 2
    assert keynews(env, "subscribers", "remove", "ann@example.com").returncode == 0
    assert "ann@example.com" not in keynews(env, "subscribers", "list").stdout
    assert keynews(env, "subscribers", "remove", "ann@example.com").returncode == 1


def test_digest_send_now_writes_eml_when_no_smtp_host(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.add("/feed.xml", FEED)
    settings = make_workspace(tmp_path, _sources(feed_server))
    env = settings_env(settings)
    assert keynews(env, "subscribers", "add", "ann@example.com", "--tickers", "KC,ACME").returncode == 0
    assert keynews(env, "poll", "--once").returncode == 0
    preview = keynews(env, "digest", "preview", "--subscriber", "ann@example.com", "--out", str(tmp_path / "p.html"))
    assert preview.returncode == 0, preview.stderr
    assert "Kingsoft Cloud Reports" in (tmp_path / "p.html").read_text()
    assert not list((tmp_path / "outbox").glob("*.eml"))  # preview sends nothing
    sent = keynews(env, "digest", "send", "--now")
    assert sent.returncode == 0, sent.stderr
    files = (tmp_path / "outbox").glob("*.eml")
    msgs = [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in files]
    by_subject = {str(m["Subject"]): m for m in msgs}
    assert len(msgs) == 2, list(by_subject)  # the critical guidance cut went out as its own alert
    alert = next(m for s, m in by_subject.items() if s.startswith("Alert"))
    digest = next(m for s, m in by_subject.items() if not s.startswith("Alert"))
    assert "ACME" in alert["Subject"] and "guidance" in alert["Subject"]
    assert digest.get_content_type() == "multipart/alternative"
    assert digest["Subject"].startswith("KC: results")
    again = keynews(env, "digest", "send", "--now")
    assert "queued 0 digests and 0 alerts" in again.stdout  # nothing new: nothing sent twice
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 2


@pytest.mark.slow
def test_run_polls_mails_reloads_rules_and_stops_cleanly(
    tmp_path: Path, feed_server: FeedServer, smtp_sink: SmtpSink
) -> None:
    feed_server.add("/feed.xml", FEED)
    settings = make_workspace(tmp_path, _sources(feed_server), smtp_host="127.0.0.1", smtp_port=smtp_sink.port)
    env = settings_env(settings) | {"KEYNEWS_TICK_SECONDS": "1"}
    assert (
        keynews(
            env, "subscribers", "add", "now@example.com", "--tickers", "KC,ACME", "--frequency", "immediate"
        ).returncode
        == 0
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "run"],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while len(smtp_sink.messages) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        # the critical guidance cut comes as an alert, the results in the immediate digest
        subjects = sorted(
            email.message_from_bytes(raw, policy=policy.default)["Subject"] for _f, _r, raw in smtp_sink.messages
        )
        assert len(subjects) == 2, subjects
        assert subjects[0].startswith("Alert") and "ACME" in subjects[0]
        assert "KC" in subjects[1]
        # a bad edit while running: logged, previous rules kept, daemon alive
        (settings.rules_dir / "zz-bad.yaml").write_text(BAD_RULE, encoding="utf-8")
        time.sleep(7)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "rules not reloaded" in out and "zz-bad.yaml:7:18" in out
    assert "keeping the previous rule set" in out


def test_init_starts_an_operator_folder_and_keeps_edits(tmp_path: Path) -> None:
    folder = tmp_path / "ops"
    first = keynews({}, "init", str(folder))
    assert first.returncode == 0, first.stderr
    shipped = sorted(p.name for p in (REPO / "rules").glob("*.yaml"))
    assert sorted(p.name for p in (folder / "rules").glob("*.yaml")) == shipped
    assert "watchlist.yaml" in shipped and "sources.yaml" in shipped
    watchlist = folder / "rules" / "watchlist.yaml"
    watchlist.write_text(watchlist.read_text(encoding="utf-8") + "# edited by the operator\n", encoding="utf-8")
    again = keynews({}, "init", str(folder))
    assert again.returncode == 0 and f"kept    {watchlist}" in again.stdout
    assert watchlist.read_text(encoding="utf-8").endswith("# edited by the operator\n")
    check = keynews({}, "rules", "check", str(folder / "rules"))
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("OK: ")


def test_db_prune_reports_what_it_dropped(tmp_path: Path) -> None:
    env = settings_env(make_workspace(tmp_path, "sources: []\n"))
    done = keynews(env, "db", "prune", "--days", "7")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "outbox: dropped the mail bytes of 0 rows older than 7 days"
    keep = keynews(env, "db", "prune", "--days", "0")
    assert keep.returncode == 0 and "keeping everything" in keep.stdout
