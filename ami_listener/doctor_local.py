"""The doctor's checks that need no network: the config file, the spool, paths, modes.

Each check is one ``Check`` line: ``ok``, ``warn`` (works, but look) or ``FAIL`` (will not
work), with what is wrong and how to fix it.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .config import DialerSettings, Settings, split_listen
from .config_sections import WEEKDAYS
from .errors import ConfigError

Level = Literal["ok", "warn", "FAIL"]


@dataclass(frozen=True, slots=True)
class Check:
    level: Level
    name: str
    detail: str

    def __str__(self) -> str:
        return f"{self.level} {self.name}: {self.detail}"


def local_checks(path: Path, environ: Mapping[str, str]) -> tuple[Settings | None, list[Check]]:
    """The settings (None if the file does not load) and the lines about them."""
    try:
        settings = Settings.load(path, environ)
    except ConfigError as exc:
        return None, [Check("FAIL", "config", str(exc))]
    checks = [Check("ok", "config", str(path))]
    names = ", ".join(settings.targets)
    checks.append(Check("ok", "targets", f"{len(settings.targets)} ({names})"))
    d = settings.dialer
    how = f"{d.method} via {d.channel}, {d.max_concurrent} at once, {d.max_cps:g}/s"
    checks.append(Check("ok", "dialer", how))
    if d.method == "callfile":
        checks.append(spool_check(d))
    db_dir = settings.database.path.parent
    ok = db_dir.is_dir() and os.access(db_dir, os.W_OK)
    detail = str(settings.database.path) + ("" if ok else f": {db_dir} is not a writable dir")
    checks.append(Check("ok" if ok else "FAIL", "database", detail))
    hours = settings.calling_hours
    window = "none (any time)"
    if hours is not None:
        days = " ".join(WEEKDAYS[d] for d in sorted(hours.weekdays))
        window = f"{hours.window().describe()} {days}, default zone {hours.default_timezone}"
    checks.append(Check("ok", "calling hours", window))
    host, port = split_listen(settings.api.listen)
    exposed = host not in ("127.0.0.1", "::1", "localhost")
    api = f"{host}:{port}" + (" (not loopback: put TLS in front)" if exposed else "")
    checks.append(Check("warn" if exposed else "ok", "api", api))
    checks.append(secrets_check(path))
    weak = weak_secrets(settings)
    if weak:
        detail = f"{', '.join(weak)} look like placeholders: use 32+ random characters"
        checks.append(Check("warn", "secret strength", detail))
    return settings, checks


_PLACEHOLDERS = {"change-me", "changeme", "secret", "password", "...", "token", "test"}


def weak_secrets(settings: Settings) -> list[str]:
    """The keys whose secret is a sample value or shorter than 16 characters (never the
    values themselves: they are not printed)."""
    found = []
    for name, value in (
        ("[ami].secret", settings.ami.secret),
        ("[api].token", settings.api.token),
        ("[webhooks].secret", settings.webhooks.secret),
    ):
        text = value.get_secret_value() if value is not None else None
        if text is not None and (text.lower() in _PLACEHOLDERS or len(text) < 16):
            found.append(name)
    return found


def secrets_check(path: Path) -> Check:
    text = path.read_text(errors="replace")
    in_file = any(line.strip().startswith(("secret", "token")) for line in text.splitlines())
    mode = stat.S_IMODE(path.stat().st_mode)
    if in_file and mode & 0o077:
        return Check("warn", "secrets", f"{path} holds secrets and is mode {mode:o}: chmod 600")
    return Check("ok", "secrets", "not in the file" if not in_file else f"{path} is private")


def spool_check(dialer: DialerSettings) -> Check:
    """What spool.py and Asterisk's pbx_spool need: we write a call file into ``tmp`` and
    rename it into ``outgoing`` (atomic only on one filesystem); Asterisk reads it there
    and then deletes or moves it, so it needs write access to ``outgoing`` too."""
    tmp, outgoing = dialer.spool_dir / "tmp", dialer.spool_dir / "outgoing"
    user = dialer.asterisk_user
    missing = [str(d) for d in (tmp, outgoing) if not d.is_dir()]
    if missing:
        return Check(
            "FAIL",
            "spool",
            f"{' and '.join(missing)} missing: mkdir -p {tmp} {outgoing} "
            f"&& chown {user}: {tmp} {outgoing}",
        )
    if tmp.stat().st_dev != outgoing.stat().st_dev:
        return Check(
            "FAIL",
            "spool",
            f"{tmp} and {outgoing} are on different filesystems, so moving a call file "
            "into outgoing is not atomic: keep both under one mount",
        )
    me = _user_name(os.geteuid())
    for directory in (tmp, outgoing):
        if not os.access(directory, os.W_OK | os.X_OK):
            return Check(
                "FAIL",
                "spool",
                f"{directory} is not writable by us ({me}): run as {user} or root, "
                f"or give {me} write access to it",
            )
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        # As root, spool.py chowns each call file to this user, which then fails.
        level: Level = "FAIL" if os.geteuid() == 0 else "warn"
        return Check(
            level,
            "spool",
            f"[dialer].asterisk_user {user!r} is not a user on this host: "
            "set it to the user Asterisk runs as",
        )
    if not _writable_by(outgoing, entry):
        st = outgoing.stat()
        owner = f"{_user_name(st.st_uid)}:{_group_name(st.st_gid)}"
        return Check(
            "FAIL",
            "spool",
            f"{outgoing} is not writable by {user} ({owner}, mode "
            f"{stat.S_IMODE(st.st_mode):o}), so Asterisk cannot remove call files: "
            f"chown {user}: {outgoing}",
        )
    if os.geteuid() not in (0, entry.pw_uid):
        # Not root, so no chown: the file (mode 640) keeps our group, which Asterisk
        # must be in to read it (a set-group-id tmp dir passes its group on instead).
        st = tmp.stat()
        gid = st.st_gid if st.st_mode & stat.S_ISGID else os.getegid()
        if gid not in _groups(entry):
            return Check(
                "FAIL",
                "spool",
                f"call files are written mode 640 with group {_group_name(gid)}, which "
                f"{user} is not in, so Asterisk cannot read them: add {user} to that "
                f"group, or run as {user} or root",
            )
    return Check(
        "ok", "spool", f"{outgoing} and {tmp} on one filesystem, writable by us and by {user}"
    )


def _writable_by(path: Path, entry: pwd.struct_passwd) -> bool:
    """Whether ``entry`` may create and remove files in ``path``, by mode bits (ACLs
    are not read: they would only allow more)."""
    if entry.pw_uid == os.geteuid():
        return os.access(path, os.W_OK | os.X_OK)
    if entry.pw_uid == 0:
        return True
    st = path.stat()
    if st.st_uid == entry.pw_uid:
        need = stat.S_IWUSR | stat.S_IXUSR
    elif st.st_gid in _groups(entry):
        need = stat.S_IWGRP | stat.S_IXGRP
    else:
        need = stat.S_IWOTH | stat.S_IXOTH
    return st.st_mode & need == need


def _groups(entry: pwd.struct_passwd) -> set[int]:
    return set(os.getgrouplist(entry.pw_name, entry.pw_gid))


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
