"""Kill the sender with SIGKILL mid-run; restart it; every digest arrives, never two different ones."""

from __future__ import annotations

import email
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import replace
from datetime import timedelta
from email import policy
from pathlib import Path

import pytest
from smtpserver import SmtpSink
from test_digest_delivery import seed
from workspace import NOW, make_workspace, settings_env

from daemon.mail.digest import DigestService
from daemon.service import App

SUBSCRIBERS = 50
REPO = Path(__file__).resolve().parents[2]


def _run_sender(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "daemon", "send"],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_sigkill_mid_send_loses_nothing_and_never_sends_two_different_digests(
    tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    settings = make_workspace(tmp_path, "sources: []\n", smtp_host="127.0.0.1", smtp_port=smtp_sink.port)
    app = App.load(settings)
    seed(app.repo, 4)
    emails = [f"sub{i:02d}@example.com" for i in range(SUBSCRIBERS)]
    for addr in emails:
        app.repo.add_subscriber(addr, ["KC"], now=NOW - timedelta(days=1))
    closed = DigestService(app.settings, app.repo, app.watchlist).close_due(NOW, force_window="daily:crash-test")
    assert closed.queued == SUBSCRIBERS
    app.close()

    env = settings_env(replace(settings, smtp_host="127.0.0.1", smtp_port=smtp_sink.port))
    env["KEYNEWS_SEND_LEASE_S"] = "2"
    env["KEYNEWS_SEND_BATCH"] = "10"
    smtp_sink.delay(0.05)  # slow server: the kill lands mid-run
    proc = _run_sender(env)
    deadline = time.monotonic() + 60
    while len(smtp_sink.messages) < 12 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    delivered_before = len(smtp_sink.messages)
    assert 0 < delivered_before < SUBSCRIBERS, "the kill must land mid-run"

    time.sleep(2.2)  # the dead sender's lease runs out
    smtp_sink.delay(0)
    restart = _run_sender(env)
    _out, err = restart.communicate(timeout=120)
    assert restart.returncode == 0, err.decode()

    by_rcpt: dict[str, list[str]] = defaultdict(list)
    for _frm, rcpts, raw in smtp_sink.messages:
        msg = email.message_from_bytes(raw, policy=policy.default)
        for r in rcpts:
            by_rcpt[r].append(str(msg["Message-ID"]))
    assert sorted(by_rcpt) == emails  # everyone got their digest
    for addr, ids in by_rcpt.items():
        assert len(set(ids)) == 1, f"{addr} got two different digests for one window: {ids}"
    duplicates = sum(len(ids) - 1 for ids in by_rcpt.values())
    # only the message in flight at the kill may be repeated, with the same Message-ID
    assert duplicates <= 1
    app2 = App.load(settings)
    assert app2.repo.outbox_counts() == {"sent": SUBSCRIBERS}
