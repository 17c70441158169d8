"""The doctor's AMI probes: one short session that logs in, asks, and logs off.

``AmiClient`` (ami.py) supervises a connection forever; the doctor needs the opposite,
one attempt with a deadline, so this is a small client of its own on the same framing
(``ami_protocol.split_frames``). What it learns:

- the login: refused (wrong secret, or an ACL: Asterisk says "Authentication failed" to
  both) or accepted;
- ``ListCommands``: the actions the user's ``write =`` classes allow (Originate is a must;
  CoreShowChannels reconciles after a restart; Filter needs ``system``);
- ``Command: manager show user <name>`` (needs ``write = command``): the user's
  ``read =`` classes. Asterisk reports them nowhere else: a user without ``read = call``
  logs in fine and then silently never gets a call event;
- ``Command: dialplan show <context>`` per target context: Asterisk answers
  "There is no existence of '<context>' context" when it is missing.

The secret goes into the Login action only; it is never part of a result.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Sequence

from .ami_protocol import EOM, split_frames
from .config import Settings
from .doctor_local import Check
from .errors import AmiError

Frame = list[tuple[str, str]]
MAX_EVENTS = 100

NEEDED_READ = ("call", "dialplan", "user", "system")
"""Event classes the daemon needs (see asterisk-conf/manager.conf for which events)."""


def _parse(frame: bytes) -> Frame:
    pairs: Frame = []
    for line in frame.decode("utf-8", "replace").split("\r\n"):
        key, sep, value = line.partition(":")
        if sep:
            pairs.append((key.strip(), value.removeprefix(" ")))
    return pairs


def header(frame: Frame, key: str) -> str:
    wanted = key.lower()
    return next((v for k, v in frame if k.lower() == wanted), "")


def output(frame: Frame) -> list[str]:
    """A ``Command`` reply's CLI output, one item per line."""
    return [v for k, v in frame if k.lower() == "output"]


class AmiProbe:
    """One AMI session; every wait is bounded by ``timeout_s`` (AmiError when it ends)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout_s: float
    ) -> None:
        self._reader, self._writer, self._timeout_s = reader, writer, timeout_s
        self._frames: list[bytes] = []
        self._rest = b""
        self._ids = itertools.count(1)
        self.banner = ""
        self.events: list[Frame] = []
        """Messages that were not replies to us, the latest ``MAX_EVENTS`` kept."""

    @classmethod
    async def open(cls, host: str, port: int, timeout_s: float) -> AmiProbe:
        try:
            async with asyncio.timeout(timeout_s):
                reader, writer = await asyncio.open_connection(host, port)
                banner = await reader.readline()
        except TimeoutError:
            raise AmiError(f"no answer from {host}:{port} within {timeout_s:g} s") from None
        except OSError as exc:
            raise AmiError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
        probe = cls(reader, writer, timeout_s)
        probe.banner = banner.decode("ascii", "replace").strip()
        if not probe.banner.startswith("Asterisk Call Manager/"):
            await probe.close()
            raise AmiError(f"{host}:{port} is not an AMI port (it said {probe.banner[:40]!r})")
        return probe

    async def action(self, name: str, fields: Sequence[tuple[str, str]] = ()) -> Frame:
        """Send one action; return its reply (events in between are skipped)."""
        action_id = f"autoretry-doctor-{next(self._ids)}"
        lines = [("Action", name), ("ActionID", action_id), *fields]
        if any(c in v for _, v in lines for c in "\r\n\x00"):
            raise AmiError(f"{name}: a value contains CR, LF or NUL")  # would inject headers
        self._writer.write("".join(f"{k}: {v}\r\n" for k, v in lines).encode() + b"\r\n")
        try:
            async with asyncio.timeout(self._timeout_s):
                while True:
                    frame = _parse(await self._next_frame())
                    if header(frame, "ActionID") == action_id and header(frame, "Response"):
                        return frame
                    self.events = [*self.events[-MAX_EVENTS + 1 :], frame]
        except TimeoutError:
            raise AmiError(f"no reply to {name} within {self._timeout_s:g} s") from None

    async def _next_frame(self) -> bytes:
        while not self._frames:
            data = await self._reader.read(65536)
            if not data:
                raise AmiError("Asterisk closed the connection")
            frames, self._rest = split_frames(self._rest + data)
            self._frames.extend(f for f in frames if f.strip())
        return self._frames.pop(0)

    async def close(self) -> None:
        if not self._writer.is_closing():
            with contextlib.suppress(ConnectionError):
                self._writer.write(b"Action: Logoff\r\n" + EOM)
                await self._writer.drain()
            self._writer.close()
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(self._writer.wait_closed(), self._timeout_s)


async def ami_checks(settings: Settings) -> list[Check]:
    """The ``ami``, ``events`` and ``dialplan`` lines (only ``ami`` if there is no session)."""
    ami = settings.ami
    secret = ami.secret.get_secret_value() if ami.secret else ""
    user, where = ami.username, f"{ami.host}:{ami.port}"
    try:
        probe = await AmiProbe.open(ami.host, ami.port, ami.connect_timeout_s)
    except AmiError as exc:
        hint = "is Asterisk running, with enabled = yes and this port/bindaddr in manager.conf?"
        return [Check("FAIL", "ami", f"{exc}: {hint}")]
    try:
        login = await probe.action(
            "Login", [("Username", user), ("Secret", secret), ("Events", "off")]
        )
        if header(login, "Response") != "Success":
            reason = header(login, "Message") or "refused"
            return [
                Check(
                    "FAIL",
                    "ami",
                    f"login as {user!r} at {where} refused ({reason}): check [ami].username "
                    f"and secret ($AUTORETRY_AMI_SECRET) against [{user}] secret, permit and "
                    "deny in manager.conf",
                )
            ]
        actions = await _actions(probe)
        checks = [_ami_line(settings, probe.banner, actions)]
        may_command = actions is None or "command" in actions
        checks.append(await _events_line(probe, user, may_command))
        checks.append(await _dialplan_line(probe, settings, may_command))
        return checks
    except AmiError as exc:
        return [Check("FAIL", "ami", f"{where}: {exc}")]
    finally:
        await probe.close()


async def _actions(probe: AmiProbe) -> set[str] | None:
    """Lower-case names of the actions the user may run (None if ListCommands failed)."""
    reply = await probe.action("ListCommands")
    if header(reply, "Response") != "Success":
        return None
    skip = {"response", "actionid", "message", "eventlist"}
    return {k.lower() for k, _ in reply if k.lower() not in skip}


def _ami_line(settings: Settings, banner: str, actions: set[str] | None) -> Check:
    user = settings.ami.username
    where = f"{settings.ami.host}:{settings.ami.port} as {user} ({banner})"
    if actions is None:
        return Check("warn", "ami", f"logged in to {where}, but ListCommands was refused")
    if "originate" not in actions:
        fix = f"add `write = originate` (and call) to [{user}] in manager.conf"
        return Check("FAIL", "ami", f"user {user} may not Originate: {fix}")
    if "coreshowchannels" not in actions:
        return Check(
            "warn",
            "ami",
            f"user {user} may not CoreShowChannels, so calls in flight are not reconciled "
            f"after a restart: add reporting to write = in [{user}] in manager.conf",
        )
    if settings.ami.use_filters and "filter" not in actions:
        return Check(
            "warn",
            "ami",
            f"user {user} may not Filter (write = system): set [ami] use_filters = false "
            "and keep the eventfilter lines of asterisk-conf/manager.conf",
        )
    return Check("ok", "ami", f"logged in to {where}; may Originate")


async def _events_line(probe: AmiProbe, user: str, may_command: bool) -> Check:
    wanted = ",".join(NEEDED_READ)
    if not may_command:
        return Check(
            "warn",
            "events",
            f"cannot check (user lacks write=command): make sure [{user}] has read = {wanted}",
        )
    reply = await probe.action("Command", [("Command", f"manager show user {user}")])
    perms = next((line.split(":", 1)[1] for line in output(reply) if "read perm:" in line), None)
    if perms is None:
        text = " ".join(" ".join(output(reply)).split()) or header(reply, "Message")
        return Check("warn", "events", f"cannot read the permissions of {user}: {text}")
    held = {p.strip() for p in perms.split(",")}
    missing = [c for c in NEEDED_READ if c not in held and "all" not in held]
    if missing:
        return Check(
            "FAIL",
            "events",
            f"user {user} does not receive {','.join(missing)} events: "
            f"set read = {wanted} in [{user}] in manager.conf and run `manager reload`",
        )
    return Check("ok", "events", f"user {user} receives {wanted} events")


async def _dialplan_line(probe: AmiProbe, settings: Settings, may_command: bool) -> Check:
    targets: dict[str, list[str]] = {}
    for name, target in settings.targets.items():
        if target.context is not None:
            targets.setdefault(target.context, []).append(name)
    if not targets:
        return Check("ok", "dialplan", "no target dials into a context")
    if not may_command:
        return Check("warn", "dialplan", "cannot check (user lacks write=command)")
    missing, unsure = [], []
    for context in sorted(targets):
        reply = await probe.action("Command", [("Command", f"dialplan show {context}")])
        lines = output(reply)
        if f"There is no existence of '{context}' context" in lines:
            missing.append(context)
        elif header(reply, "Response") != "Success":
            unsure.append(f"{context} ({' '.join(lines[:1]) or header(reply, 'Message')})")
    if missing:
        named = ", ".join(f"{c!r} (target {', '.join(targets[c])})" for c in missing)
        return Check(
            "FAIL",
            "dialplan",
            f"no context {named} in the dialplan: define it (e.g. #include "
            "dialplan/extensions_autoretry.conf in extensions.conf), then `dialplan reload`",
        )
    if unsure:
        return Check("warn", "dialplan", f"cannot check {', '.join(unsure)}")
    return Check("ok", "dialplan", f"contexts exist: {', '.join(sorted(targets))}")
