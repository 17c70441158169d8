"""Asterisk's side of the AGI protocol, for tests: the ``agi_*`` block as in the recorded
FastAGI transcripts (shared/asterisk/transcripts/amd-sip-*.agi), then one reply per
command as res_agi writes it, HANGUP notifications (FastAGI) or SIGHUP (process AGI)
when the channel hangs up, ``511`` for commands not allowed on a dead channel.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

# res_agi's dead-channel table: only these run after a hangup.
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_DEAD_OK = ("EXEC", "GET FULL VARIABLE", "GET VARIABLE", "SET VARIABLE", "VERBOSE", "NOOP")


def agi_env(script: str, args: list[str], *, network: bool, extension: str = "s") -> bytes:
    """The block Asterisk 20 sends first (field order and values from amd-sip-machine)."""
    lines = []
    if network:
        lines += [
            ("agi_network", "yes"),
            ("agi_network_script", script),
            ("agi_request", f"agi://127.0.0.1:4573/{script}"),
        ]
    else:
        lines += [("agi_request", script)]
    lines += [
        ("agi_channel", "SIP/sipp-0000001a"),
        ("agi_language", "en"),
        ("agi_type", "SIP"),
        ("agi_uniqueid", "1795861969.76"),
        ("agi_version", "20.20.1"),
        ("agi_callerid", "1000"),
        ("agi_calleridname", "Lab Retry"),
        ("agi_callingpres", "0"),
        ("agi_callingani2", "0"),
        ("agi_callington", "0"),
        ("agi_callingtns", "0"),
        ("agi_dnid", "unknown"),
        ("agi_rdnis", "unknown"),
        ("agi_context", "autoretry-connect"),
        ("agi_extension", extension),
        ("agi_priority", "2"),
        ("agi_enhanced", "0.0"),
        ("agi_accountcode", ""),
        ("agi_threadid", "140286233343680"),
    ]
    lines += [(f"agi_arg_{n}", a) for n, a in enumerate(args, 1)]
    return "".join(f"{k}: {v}\n" for k, v in lines).encode() + b"\n"


def unquote(text: str) -> list[str]:
    """res_agi ``parse_args``: blanks split, "..." groups, backslash escapes."""
    args: list[str] = []
    cur: list[str] | None = None
    quoted = escaped = False
    for ch in text:
        if ch == '"' and not escaped:
            quoted = not quoted
            if cur is None:
                cur = []
            continue
        if ch in " \t" and not quoted and not escaped:
            if cur is not None:
                args.append("".join(cur))
            cur = None
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        escaped = False
        cur = (cur or []) + [ch]
    if cur is not None:
        args.append("".join(cur))
    return args


@dataclass
class Channel:
    """One channel as the hook sees it."""

    variables: dict[str, str] = field(default_factory=dict)
    amd: tuple[str, str] = ("HUMAN", "HUMAN-800-800")
    hangup_in_amd: bool = False
    tech_causes: dict[str, str] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    dead: bool = False

    def answer(self, line: str) -> tuple[list[str], bool]:
        """The lines to send back, and whether the channel hung up with this command."""
        self.commands.append(line)
        was_dead = self.dead
        upper = line.upper()
        if self.dead and not upper.startswith(_DEAD_OK):
            return ["511 Command Not Permitted on a dead channel"], False
        if upper.startswith("GET FULL VARIABLE "):
            (expr,) = unquote(line[len("GET FULL VARIABLE ") :])[:1]
            value = _VARIABLE.sub(self._value, expr)
            return [f"200 result=1 ({value})"], False
        if upper.startswith("GET VARIABLE "):
            (name,) = unquote(line[len("GET VARIABLE ") :])[:1]
            found = self.variables.get(name)
            return (["200 result=0"] if found is None else [f"200 result=1 ({found})"]), False
        if upper.startswith("SET VARIABLE "):
            name, value = unquote(line[len("SET VARIABLE ") :])[:2]
            self.variables[name] = value
            return ["200 result=1"], False
        if upper.startswith("EXEC "):
            parts = unquote(line[5:])
            app, data = parts[0], parts[1] if len(parts) > 1 else ""
            if app == "AMD":
                status, cause = ("HANGUP", "") if self.hangup_in_amd else self.amd
                self.variables |= {"AMDSTATUS": status, "AMDCAUSE": cause}
                self.dead |= self.hangup_in_amd
            elif app == "UserEvent":
                self.events.append(data)
            elif app not in ("Playback", "WaitForSilence"):
                return ["200 result=-2"], False
            return ["200 result=0"], self.dead and not was_dead
        if upper.startswith("VERBOSE "):
            return ["200 result=1"], False
        if upper == "HANGUP":
            self.dead = True
            return ["200 result=1"], True
        return ["510 Invalid or unknown command"], False

    def _value(self, match: re.Match[str]) -> str:
        name = match[1]
        if name == "HANGUPCAUSE_KEYS()":
            return ",".join(self.tech_causes)
        found = re.fullmatch(r"HANGUPCAUSE\(([^,]*),tech\)", name)
        if found:
            return self.tech_causes.get(found[1], "")
        return self.variables.get(name, "")


async def play(
    channel: Channel,
    readline: Callable[[], Awaitable[bytes]],
    write: Callable[[bytes], Awaitable[None]],
    on_hangup: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Answer commands until the script closes its side. ``on_hangup`` None: FastAGI
    (send ``HANGUP``); else process AGI (Asterisk sends SIGHUP)."""
    while True:
        raw = await readline()
        if not raw:
            return
        lines, hung_up = channel.answer(raw.decode().rstrip("\n"))
        await write("".join(f"{line}\n" for line in lines).encode())
        if hung_up:
            if on_hangup is None:
                await write(b"HANGUP\n")  # res_agi run_agi, between commands
            else:
                await on_hangup()
