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


class AnchorError(LedgerError):
    """An anchor file that cannot be trusted: unreadable, not an anchor, or its signature
    does not hold (or cannot be checked)."""
