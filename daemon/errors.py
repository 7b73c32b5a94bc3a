"""Exception tree: one root so the CLI can turn any known failure into a clear message."""

from __future__ import annotations


class KeynewsError(Exception):
    """Base of every error keynews raises on purpose."""


class ConfigError(KeynewsError):
    """Settings or operator files (watchlist, sources) that cannot be used."""


class RuleError(KeynewsError):
    """One problem in a rule file, located as path:line:col."""

    def __init__(self, path: str, line: int, col: int, message: str) -> None:
        self.path = path
        self.line = line
        self.col = col
        self.message = message
        super().__init__(f"{path}:{line}:{col}: {message}")


class RuleLoadError(KeynewsError):
    """All errors found while loading a rule set; the set is not half-loaded."""

    def __init__(self, errors: list[RuleError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class FetchRefused(KeynewsError):
    """The fetch guard refused a URL (scheme, private address)."""


class DeliveryError(KeynewsError):
    """Sending failed. `permanent` tells the outbox whether a retry can help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        self.permanent = permanent
        super().__init__(message)
