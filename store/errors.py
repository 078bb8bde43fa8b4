"""The project's exception tree, rooted here because `store` is the ground floor.

    ExpwatchError
    ├── ConfigError          bad or missing configuration (names the key and the file)
    ├── SourceError          an upstream platform failed us
    │   ├── SourceUnavailable    transport error, timeout, 5xx, 429: worth retrying
    │   ├── SourceRejected       401/403/404/400: retrying will not help
    │   │   ├── ExperimentNotFound   the platform has no experiment with that id
    │   │   └── HistoryUnavailable   the platform does not serve past results (backfill)
    │   └── PayloadError         the answer did not have the documented shape
    ├── StoreError           the database failed
    ├── DeliveryError        an alert could not be delivered
    └── UnknownExperiment    a caller named an experiment the store has never seen

Other packages raise the branches; third-party errors are translated at package
boundaries with ``raise ... from exc``.
"""

from __future__ import annotations


class ExpwatchError(Exception):
    """Root of every error expwatch raises on purpose."""


class ConfigError(ExpwatchError):
    """The configuration cannot be used.

    `path` is the config file (or None for environment-only settings), `key` the dotted
    key that is wrong (or None when the file itself is the problem).
    """

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.key = key


class SourceError(ExpwatchError):
    """An upstream platform call failed. `source` names the configured source."""

    def __init__(
        self,
        message: str,
        *,
        source: str,
        experiment_id: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.source = source
        self.experiment_id = experiment_id
        self.status_code = status_code


class SourceUnavailable(SourceError):
    """Transport error, timeout, 5xx or 429: the call may succeed later.

    `retry_after_seconds` carries the server's Retry-After / RateLimit-Reset hint.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str,
        experiment_id: str | None = None,
        status_code: int | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(
            message, source=source, experiment_id=experiment_id, status_code=status_code
        )
        self.retry_after_seconds = retry_after_seconds


class SourceRejected(SourceError):
    """The platform refused the request (401/403/404/400): retrying will not help."""


class ExperimentNotFound(SourceRejected):
    """The platform has no experiment with that id; `suggestions` holds the closest ids the
    source has listed."""

    def __init__(
        self,
        message: str,
        *,
        source: str,
        experiment_id: str,
        status_code: int | None = None,
        suggestions: list[str] | None = None,
    ) -> None:
        self.suggestions = list(suggestions or [])
        hint = f" Did you mean: {', '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(
            message + hint, source=source, experiment_id=experiment_id, status_code=status_code
        )


class HistoryUnavailable(SourceRejected):
    """The platform does not serve an experiment's past results to this source (GrowthBook
    without EXPERIMENT_BULK_RESULTS_ENABLED), so its history cannot be backfilled."""


class PayloadError(SourceError):
    """The platform answered, but not in the documented shape."""


class StoreError(ExpwatchError):
    """The database could not do what was asked. `database` names it (an SQLite file, or
    host/name without credentials) and `reason` gives the database's own words, when known
    (e.g. "database or disk is full", "database is locked")."""

    def __init__(
        self, message: str, *, database: str | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.database = database
        self.reason = reason


class DeliveryError(ExpwatchError):
    """An alert could not be delivered to a target. `outcome_unknown`: the target did not
    answer in time, so it may have received the alert all the same."""

    def __init__(self, message: str, *, outcome_unknown: bool = False) -> None:
        super().__init__(message)
        self.outcome_unknown = outcome_unknown


class UnknownExperiment(ExpwatchError):
    """No experiment with that id is known; `suggestions` holds the closest known ids."""

    def __init__(self, experiment_id: str, *, suggestions: list[str]) -> None:
        hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"Unknown experiment {experiment_id!r}.{hint}")
        self.experiment_id = experiment_id
        self.suggestions = suggestions


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside `exc`, exception groups flattened (`[exc]` for a plain one), in
    order: what a task group raised, as single errors to report."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]
