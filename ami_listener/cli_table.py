"""What the CLI's listing commands share: argument types, opening the database, tables."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .config import Settings
from .errors import StoreError
from .store import Store


def positive(text: str) -> int:
    """argparse type: a whole number >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return int(text)


def open_existing(settings: Settings) -> Store:
    """The configured database; an error, not a new empty file, if it is not there."""
    path = settings.database.path
    if not path.exists():  # reading must not create an empty database somewhere
        raise StoreError(f"no database at {path} (run 'autoretry migrate' first)")
    return Store.open(path, synchronous=settings.database.synchronous)


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Columns padded to their widest cell; the last column is not padded (free text)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())
