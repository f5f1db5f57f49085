"""The reward ledger: append-only, double-entry, idempotent, hash-chained.

Every function takes a SQLAlchemy ``Connection``.  The package is split by
job: ``types`` (values and vocabulary), ``hashing`` (the chain), ``reads``,
``writes`` (under the ledger writer lock, see ``settlement.locks``) and
``verify``; what the two databases do differently is ``settlement.dialect``.
Import the API from here.

Statuses: a credit starts ``pending`` (or ``confirmed``) and may go
``pending -> confirmed -> paid``; ``pending``, ``confirmed`` or ``paid`` go to
``reversed`` only through ``reverse``, which posts a ``confirmed`` debit
``reversal:<reference_id>`` (final: it never moves, and is never reversed).
Repeating the transition an entry is already in is a no-op that says so.

Balances, per user and currency (minor units):

- ``pending``, ``confirmed``, ``paid``, ``reversed``: sums of the user's credit
  amounts whose current status is that status;
- ``net``: what the program owes the user now: the sum of all the user's entry
  amounts (credits positive, reversal debits negative) minus the credits ever
  paid out.  It equals the ``user:<id>`` account's postings.  A reversed paid
  credit (clawback) makes it negative: the user owes that much.

The program balance is the ``program:funding`` account per currency: minus
what the program has granted net of reversals (every currency's postings sum
to zero).
"""

from __future__ import annotations

from settlement.errors import EntryNotFound, IdempotencyConflict, IllegalTransition, LedgerError
from settlement.ledger.hashing import GENESIS_HASH, entry_hash, format_timestamp
from settlement.ledger.reads import (
    balance,
    credited_totals_many,
    describe_entry,
    existing_references,
    find_entries,
    get_entry,
    head,
    history,
    iter_entries,
    ledger_anchors,
    program_balance,
)
from settlement.ledger.types import (
    EXPORT_FIELDS,
    FUNDING_ACCOUNT,
    INITIAL_STATUSES,
    LEGAL_MOVES,
    REVERSAL_PREFIX,
    Balance,
    BulkPostResult,
    CreditRequest,
    Entry,
    PostResult,
    TotalsKey,
    Transition,
    TransitionResult,
    VerifyReport,
    payout_account,
    user_account,
)
from settlement.ledger.verify import verify
from settlement.ledger.writes import (
    confirm,
    confirm_due,
    pay,
    post_credit,
    post_credits,
    reverse,
    reverse_many,
    transition_many,
)

__all__ = [
    "EXPORT_FIELDS", "FUNDING_ACCOUNT", "GENESIS_HASH", "INITIAL_STATUSES", "LEGAL_MOVES",
    "REVERSAL_PREFIX", "Balance", "BulkPostResult", "CreditRequest", "Entry", "EntryNotFound",
    "IdempotencyConflict", "IllegalTransition", "LedgerError", "PostResult", "TotalsKey",
    "Transition", "TransitionResult", "VerifyReport", "balance", "confirm", "confirm_due",
    "credited_totals_many", "describe_entry", "entry_hash", "existing_references",
    "find_entries", "format_timestamp", "get_entry", "head", "history", "iter_entries",
    "ledger_anchors", "pay", "payout_account", "post_credit", "post_credits", "program_balance",
    "reverse", "reverse_many", "transition_many", "user_account", "verify",
]
