"""Key-value settings the daemon keeps for itself (signing secret, price alert book)."""

from __future__ import annotations

import secrets

from sqlalchemy.exc import IntegrityError

from daemon.store.base import StoreBase
from daemon.store.tables import (
    Meta,
)


class MetaStore(StoreBase):
    def get_meta(self, key: str) -> str | None:
        with self.session() as s:
            row = s.get(Meta, key)
            return row.value if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.session() as s:
            row = s.get(Meta, key)
            if row is None:
                s.add(Meta(key=key, value=value))
            else:
                row.value = value
            s.commit()

    def secret_key(self) -> str:
        """The signing secret: generated once and kept, so links in old mail stay valid."""
        existing = self.get_meta("secret_key")
        if existing:
            return existing
        candidate = secrets.token_urlsafe(32)
        try:
            with self.session() as s:
                s.add(Meta(key="secret_key", value=candidate))
                s.commit()
        except IntegrityError:
            pass
        return self.get_meta("secret_key") or candidate
