"""Errors of turning a model into text, diagrams and pages (all under ``ReferralError``)."""

from __future__ import annotations

from dsl.errors import ReferralError

# What to tell a user without Graphviz, per command: the way out differs.
DOT_MISSING = (
    "Graphviz's `dot` program was not found; install it "
    "(Debian/Ubuntu: apt-get install graphviz) or use --format dot"
)
CATALOG_DOT_MISSING = (
    "Graphviz's `dot` program was not found; the catalog's diagrams need it "
    "(Debian/Ubuntu: apt-get install graphviz)"
)


class FormatError(ReferralError):
    """A model node the text generator has no syntax for."""


class RenderError(ReferralError):
    """A diagram or a catalog could not be written."""


class GraphvizNotFoundError(RenderError):
    """Graphviz's ``dot`` binary, which SVG, PNG and the catalog need, is not on PATH.

    The message names the remedy for the command at hand: ``rules render`` can
    still write DOT without it (the default), the catalog cannot.
    """

    def __init__(self, message: str = DOT_MISSING) -> None:
        super().__init__(message)


__all__ = [
    "CATALOG_DOT_MISSING",
    "DOT_MISSING",
    "FormatError",
    "GraphvizNotFoundError",
    "RenderError",
]
