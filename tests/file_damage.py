"""Damage a file in place, one byte at a time, for the tests of the integrity checks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def flipped(path: Path, position: int, mask: int = 0xFF) -> Iterator[None]:
    """XOR the byte at ``position`` of ``path`` with ``mask`` for the duration of the block.

    The byte is changed in place (no truncation: rewriting a whole file costs milliseconds on
    some file systems, and these tests damage every byte of a file in turn).
    """
    with path.open("r+b") as f:
        f.seek(position)
        old = f.read(1)[0]
        f.seek(position)
        f.write(bytes([old ^ mask]))
    try:
        yield
    finally:
        with path.open("r+b") as f:
            f.seek(position)
            f.write(bytes([old]))
