"""What a settlement run tells the world while it runs: its phase and its counts.

``settlement.batch`` calls a ``RunObserver`` at each phase and after each chunk;
the base class does nothing, so a library caller that wants none of it passes
nothing.  ``settlement.runs.RunTracker`` is the observer the CLI uses: it logs
(``logging``, the CLI chooses text or JSON lines) and keeps the run history
outside the run's transaction.  Kept apart from both so that neither imports
the other's dependencies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlalchemy as sa

# The phases of a run, in order.  reading/evaluating/posting repeat per chunk of records
# (read, then evaluated, then written); posting comes once more for LIMIT room freed late.
PHASES = ("start", "locking", "reading", "evaluating", "posting", "confirming", "checking",
          "committing", "done")
CHUNK_PHASES = frozenset({"reading", "evaluating", "posting"})


class RunObserver:
    """Told what a run is doing; every method is a no-op here."""

    def phase(self, name: str, counts: dict[str, Any]) -> None:
        """The run entered phase ``name`` (one of ``PHASES``); ``counts`` so far."""

    def progress(self, counts: dict[str, Any]) -> None:
        """A chunk of records is settled; ``counts`` so far (cheap: called per chunk)."""

    def before_commit(self, conn: sa.Connection, summary: Any) -> None:
        """Inside the run's transaction, just before it commits (never for a dry run):
        what must be committed with the run, or not at all."""
