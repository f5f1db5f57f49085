"""Errors of the money side: ledger refusals, the database, settlement runs.

All are ``ReferralError``s (the project's one root, ``dsl.errors``); the CLI's
entry point maps each class to its exit code.
"""

from __future__ import annotations

from dsl.errors import ReferralError


class LedgerError(ReferralError):
    """Root of ledger refusals (an invalid or refused operation)."""


class IdempotencyConflict(LedgerError):
    """A reference_id already names an entry with a different payload."""


class IllegalTransition(LedgerError):
    """A status change the entry's current status does not allow."""


class EntryNotFound(LedgerError):
    """No entry has the given reference_id."""


class DatabaseUnavailable(ReferralError):
    """The database cannot be reached."""


class OutcomeUnknown(DatabaseUnavailable):
    """The connection was lost around COMMIT: the run may or may not have committed.

    Rerunning is safe either way (a rerun of the same input posts nothing twice); the
    next run's start looks the run id up in ``settlement_runs`` and says which it was.
    """

    def __init__(self, run_id: str, reason: str) -> None:
        self.run_id = run_id
        super().__init__(f"outcome unknown for run {run_id}: {reason}; rerunning is safe")


class RunNotFound(ReferralError):
    """No settlement run has the given id (or id prefix), or the prefix names several."""


class SchemaNotReady(ReferralError):
    """The database schema is missing or behind: run `referral db upgrade`."""


class SettlementError(ReferralError):
    """A settlement run refused to start or was aborted."""


class PayeeImportError(ReferralError):
    """A payees file with bad rows; ``problems`` names each (file:line: field: message)."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.problems = problems
        n = len(problems)
        super().__init__(f"{path}: {n} problem{'s' if n != 1 else ''}; nothing was imported")


class PayoutError(LedgerError):
    """A payout run, export or completion refused."""


class ReportError(ReferralError):
    """A report that cannot be made as asked (an unknown locale, an empty period...)."""


class InvalidDatabaseURL(ReferralError):
    """A database URL that cannot be parsed or names a database this program does not
    support: a usage error, not an unavailable database."""


class LockBusy(ReferralError):
    """Another writer holds a lock this command needs, past the wait allowed
    (``--no-wait``, ``--lock-timeout``); nothing was written and retrying later is safe."""


class InputRejected(SettlementError):
    """The input as a whole fails the run's thresholds (more quarantined records than
    ``--max-quarantine`` allows, or no records at all): nothing was written."""


class Interrupted(ReferralError):
    """The command was interrupted (Ctrl-C) while the database ran a statement, which the
    driver then cancelled; the transaction was rolled back."""


class DatabaseRefused(ReferralError):
    """The database refused a statement (a value too long or too large for its column, a
    read-only transaction, a constraint): nothing of the transaction was written."""


class RecordsFileError(SettlementError):
    """A records file that cannot be read as a whole: nothing of it is settled.

    A broken JSON array or gzip stream (nothing after the break can be delimited)
    or a CSV header naming a column twice; one bad record is quarantined instead.
    """


class AnchorError(LedgerError):
    """An anchor file that cannot be trusted: unreadable, not an anchor, or its signature
    does not hold (or cannot be checked)."""
