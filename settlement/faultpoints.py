"""Named points of a settlement run where the fault suite kills it (test-only).

With ``REFERRAL_FAULT_PAUSE_AT=<point>`` in its environment, a run that reaches that
point writes ``fault point: <point>`` to stderr and waits there until it is killed, so
``tests/faults/test_faults_crash.py`` can kill -9 it at an exact phase instead of at a
lucky moment.  Never set in production; unset, a point costs one environment lookup.

Points: ``mid-write`` (the first chunk's rows written, input still streaming),
``after-read`` (the whole input read and its chunks written; top-ups, confirmations
and the run log still to come), ``before-commit`` (everything written, COMMIT not yet
sent), ``after-commit`` (COMMIT returned, nothing reported yet).
"""

from __future__ import annotations

import os
import sys
import time

ENV = "REFERRAL_FAULT_PAUSE_AT"
POINTS = ("mid-write", "after-read", "before-commit", "after-commit")


def reached(point: str) -> None:
    """Pause here for good when the environment names this point."""
    if os.environ.get(ENV) != point:
        return
    sys.stderr.write(f"fault point: {point}\n")
    sys.stderr.flush()
    while True:
        time.sleep(3600)
