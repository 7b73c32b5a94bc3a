"""Where the bundled templates/ and rules/ live: a source checkout's, or an installed wheel's.

The design keeps both at the top of the repository, outside the package; a wheel installs them
as data under `<prefix>/share/keynews/`, so `pip install keynews` needs no checkout.
"""

from __future__ import annotations

import sys
from pathlib import Path


def bundled_dir(name: str) -> Path:
    """`templates` or `rules`: the checkout's when running from one, else the installed copy."""
    checkout = Path(__file__).resolve().parents[1] / name
    installed = Path(sys.prefix) / "share" / "keynews" / name
    for candidate in (checkout, installed):
        if candidate.is_dir():
            return candidate
    return checkout
