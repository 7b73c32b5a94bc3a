"""The engine and session every store shares; `Repo` (repo.py) is the sum of the stores.

Every write that must not half-happen is one transaction inside one store method, so callers
cannot get it wrong.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session


class StoreBase:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def count(self, table: type, *, status: str | None = None) -> int:
        """Rows in `table`; with `status`, only those in it (tables with a status column)."""
        stmt = select(func.count()).select_from(table)
        if status is not None:
            stmt = stmt.where(table.status == status)
        with self.session() as s:
            return int(s.execute(stmt).one()[0])


def utcnow() -> datetime:
    return datetime.now(UTC)
