"""``python -m referral``: the same entry point as the ``referral`` console script."""

from referral.cli import run

run()
