"""The reward ledger: append-only, double-entry, idempotent, hash-chained.

Every function takes a SQLAlchemy ``Connection``.  The package is split by
job: ``types`` (values and vocabulary), ``hashing`` (the chain), ``reads``,
``writes`` (under the ledger writer lock, see ``settlement.locks``) and
``verify``; what the two databases do differently is ``settlement.dialect``.
Import the API from here.

Three kinds of entry, each a transfer between accounts (``types``):

- ``credit``: a reward, ``program:funding -> user:<id>``;
- ``debit``: ``reversal:<reference_id>``, the credit's amount moved back
  (``user:<id> -> program:funding``); a reversed paid credit is a clawback;
- ``payout``: ``payout:<item id>``, one payout item of a batch
  (``settlement.payouts``): ``user:<id> -> clearing:<batch>`` when created, then
  ``clearing:<batch> -> payout:<id>`` when paid or back to ``user:<id>`` when failed.

Statuses: a credit starts ``pending`` (or ``confirmed``) and may go
``pending -> confirmed -> paid``; ``pending``, ``confirmed`` or ``paid`` go to
``reversed`` only through ``reverse``, which posts a ``confirmed`` debit
``reversal:<reference_id>`` (final: it never moves, and is never reversed).
A payout item goes ``created -> sent -> paid | failed``.  Repeating the
transition an entry is already in is a no-op that says so.  Every entry and
transition carries a business date beside its wall-clock time (``writes``).

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
    ExportFilter,
    balance,
    credited_totals_many,
    describe_entry,
    existing_references,
    find_entries,
    get_entry,
    head,
    history,
    iter_entries,
    iter_export,
    ledger_anchors,
    live_covers,
    pending_credits,
    program_balance,
)
from settlement.ledger.types import (
    EXPORT_FIELDS,
    FUNDING_ACCOUNT,
    INITIAL_STATUSES,
    LEGAL_MOVES,
    PAYOUT_PREFIX,
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
    clearing_account,
    payout_account,
    user_account,
)
from settlement.ledger.verify import verify
from settlement.ledger.writes import (
    approve,
    business_day,
    confirm,
    confirm_due,
    pay,
    post_credit,
    post_credits,
    post_payout_items,
    resolve_business_date,
    reverse,
    reverse_many,
    transition_many,
)

__all__ = [
    "EXPORT_FIELDS", "FUNDING_ACCOUNT", "GENESIS_HASH", "INITIAL_STATUSES", "LEGAL_MOVES",
    "PAYOUT_PREFIX", "REVERSAL_PREFIX", "Balance", "BulkPostResult", "CreditRequest", "Entry",
    "EntryNotFound", "ExportFilter", "IdempotencyConflict", "IllegalTransition", "LedgerError",
    "PostResult", "TotalsKey", "Transition", "TransitionResult", "VerifyReport", "approve",
    "balance",
    "business_day", "clearing_account", "confirm", "confirm_due", "credited_totals_many",
    "describe_entry", "entry_hash", "existing_references", "find_entries", "format_timestamp",
    "get_entry", "head", "history", "iter_entries", "iter_export", "ledger_anchors",
    "live_covers", "pay", "pending_credits", "payout_account", "post_credit", "post_credits",
    "post_payout_items",
    "program_balance", "resolve_business_date", "reverse", "reverse_many", "transition_many",
    "user_account", "verify",
]
