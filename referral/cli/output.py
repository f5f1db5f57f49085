"""Files a command writes: whole or not at all.

A file is written to a temporary file beside it and renamed over the target
only when the command succeeded (``os.replace`` is atomic on POSIX), so a full
disk, a crash or an aborted run never leaves a truncated or 0-byte file, and an
``--explain`` file never says "posted" for a run that was rolled back.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from referral.cli.common import CommandOutputError


def _open(fd: int, newline: str | None) -> TextIO:
    return os.fdopen(fd, "w", encoding="utf-8", newline=newline)


@contextmanager
def atomic_file(path: Path, *, newline: str | None = None) -> Iterator[TextIO]:
    """Write ``path`` in the block; it appears, complete, only if the block succeeds.

    ``-`` is standard output (not atomic).  A failed write (ENOSPC, EACCES...) is a
    ``CommandOutputError`` naming the path and the cause; the temporary file is removed.
    """
    if str(path) == "-":
        yield sys.stdout
        return
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise CommandOutputError(f"{path}: cannot write: {e.strerror or e}") from None
    try:
        with _open(fd, newline) as fh:
            yield fh
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise CommandOutputError(
            f"{path}: cannot write: {e.strerror or e}; the file was not written") from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
