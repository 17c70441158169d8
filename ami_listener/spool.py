"""Call-file adapter: write into ``spool_dir/tmp``, set mtime and owner, rename into outgoing.

Asterisk's pbx_spool may read a file the moment it appears in ``outgoing/``, so the file is
written completely elsewhere and moved in with ``rename`` (atomic only within one
filesystem, hence ``tmp/`` beside ``outgoing/`` and the device check). The mtime is the time
pbx_spool dials (a future mtime makes it wait).
"""

from __future__ import annotations

import os
import pwd
import re
from datetime import datetime
from pathlib import Path

from .errors import AutoretryError

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,120}$")


class SpoolError(AutoretryError):
    """The spool directory is missing, on two filesystems, or not writable."""


def spool_paths(spool_dir: Path) -> tuple[Path, Path]:
    """(tmp, outgoing) under ``spool_dir``; raises SpoolError unless both share a filesystem."""
    tmp, outgoing = spool_dir / "tmp", spool_dir / "outgoing"
    try:
        same = tmp.stat().st_dev == outgoing.stat().st_dev
    except OSError as exc:
        raise SpoolError(f"spool directory: {exc.strerror}: {exc.filename}") from None
    if not same:
        raise SpoolError(f"{tmp} and {outgoing} are on different filesystems: rename is not atomic")
    return tmp, outgoing


def write_callfile(
    spool_dir: Path,
    name: str,
    text: str,
    *,
    dial_at: datetime | None = None,
    owner: str | None = None,
) -> Path:
    """Place call file ``name`` (``<name>.call``) into ``outgoing/``; return its final path.

    ``owner`` is chowned to when we run as root, so Asterisk (running as its own user)
    may delete or archive the file afterwards.
    """
    if not _SAFE_NAME.match(name):
        raise SpoolError(f"call file name {name!r} is not a safe file name")
    tmp, outgoing = spool_paths(spool_dir)
    staging = tmp / f"{name}.call"
    final = outgoing / f"{name}.call"
    try:
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if dial_at is not None:
            stamp = dial_at.timestamp()
            os.utime(staging, (stamp, stamp))
        if owner and os.geteuid() == 0:
            entry = pwd.getpwnam(owner)
            os.chown(staging, entry.pw_uid, entry.pw_gid)
        os.rename(staging, final)
    except KeyError:
        staging.unlink(missing_ok=True)
        raise SpoolError(f"call file owner {owner!r} is not a user on this host") from None
    except OSError as exc:
        staging.unlink(missing_ok=True)
        raise SpoolError(f"writing call file {name}: {exc.strerror}") from None
    return final
