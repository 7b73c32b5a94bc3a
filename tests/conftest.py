"""Shared fixtures. Keep small; append fixtures below."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `from feedserver import FeedServer` everywhere

from feedserver import FeedServer

if TYPE_CHECKING:
    from smtpserver import SmtpSink

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    """A started FeedServer on 127.0.0.1; fetch it with allow_private=True."""
    with FeedServer() as server:
        yield server


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A started SmtpSink (aiosmtpd) on 127.0.0.1 and a free port; see tests/smtpserver.py for knobs."""
    from smtpserver import SmtpSink

    sink = SmtpSink().start()
    try:
        yield sink
    finally:
        sink.stop()
