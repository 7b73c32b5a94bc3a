"""`keynews demo`: offline, bundled real captures -> a digest .eml a mail client would show."""

from __future__ import annotations

import email
import os
import subprocess
import sys
from email import policy
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_writes_a_readable_digest(tmp_path: Path) -> None:
    env = {**os.environ, "KEYNEWS_CONFIG": "/nonexistent.yaml", "KEYNEWS_RULES_DIR": str(REPO / "rules")}
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "demo", "--out", str(tmp_path / "out")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path.exists() and path.suffix == ".eml" and path.parent == tmp_path / "out"
    msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    subject = str(msg["Subject"])
    assert "MSFT" in subject and "KVAC" in subject
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    # a real Seeking Alpha headline from the bundled capture, with source, link and the rule that matched
    assert "Microsoft beats by $0.12, beats on revenue" in text
    assert "Seeking Alpha" in text
    assert "https://seekingalpha.com/" in text
    assert "Why:" in text and "matched" in text
    assert "Microsoft beats by $0.12, beats on revenue" in html.replace("&#36;", "$")
    assert "<script" not in html.lower()
    assert len(html.encode()) < 90 * 1024
    assert not (tmp_path / "keynews.db").exists()  # the demo never touches the operator's database
