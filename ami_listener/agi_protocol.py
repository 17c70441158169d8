"""The AGI wire protocol: replies, argument quoting and the process-AGI runner.

Knows nothing of our hooks (``agi_handlers.py``): it turns the lines Asterisk sends into
``Reply`` values, quotes what we send, and drives a hook generator over stdin/stdout.
``fastagi.py`` drives the same generators over a socket with ``ReplyReader``.

Like ``agi_handlers``, this module is imported by a fresh Python per call (process AGI),
so it imports only what pyst2 already loaded (``re``, ``collections.abc``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Mapping

CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # CR/LF end an AGI or AMI line; NUL cuts it
_WORD = re.compile(r"[^A-Za-z0-9_.+-]")  # what may survive into a UserEvent value


class Reply:
    """One AGI answer. ``code`` 0: the peer closed (or sent something unreadable).

    Plain classes here, not dataclasses: building a dataclass costs ~1 ms at import, and
    this module is imported by a new Python process for every call (bench/agi_hooks.py).
    """

    __slots__ = ("code", "data", "hangup", "result")

    def __init__(self, code: int, result: str = "", data: str = "", hangup: bool = False):
        self.code = code
        self.result = result
        self.data = data
        self.hangup = hangup  # a HANGUP notification (the channel is gone) came before it

    @property
    def ok(self) -> bool:
        return self.code == 200 and not self.result.startswith("-")

    def hung_up(self) -> Reply:
        return Reply(self.code, self.result, self.data, True)

    def __repr__(self) -> str:
        return f"Reply({self.code}, {self.result!r}, {self.data!r}, hangup={self.hangup})"


CLOSED = Reply(0)
_REPLY = re.compile(r"^(\d{3})(?:[ -](?:result=(\S*))?\s*(?:\((.*)\))?.*)?$")


def parse_reply(line: str) -> Reply:
    """``200 result=1 (abc123)`` -> Reply(200, "1", "abc123"); garbage -> CLOSED."""
    match = _REPLY.match(line.rstrip("\r\n"))
    if match is None:
        return CLOSED
    return Reply(int(match[1]), match[2] or "", match[3] or "")


def quote(value: str) -> str:
    """An AGI argument: res_agi's parse_args splits on blanks, groups "..." and takes
    ``\\`` as an escape. CR/LF would end the command line, so they are refused."""
    if CONTROL.search(value):
        raise ValueError("AGI argument contains a control character")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def clean(value: str, limit: int = 64) -> str:
    """A value safe inside a UserEvent body (no ``,`` ``|`` ``:`` blanks or controls)."""
    return _WORD.sub("", value)[:limit]


class Verdict:
    """What a hook did, for logs and tests. ``status`` is also set as a channel variable."""

    __slots__ = ("detail", "event", "status")

    def __init__(self, status: str, detail: str = "", event: str = "") -> None:
        self.status = status
        self.detail = detail
        self.event = event  # the UserEvent body published, if any

    def __repr__(self) -> str:
        return f"Verdict({self.status!r}, {self.detail!r})"


class Request:
    """The ``agi_*`` block Asterisk sends first, and the arguments in it."""

    __slots__ = ("args", "env")

    def __init__(self, env: Mapping[str, str], args: tuple[str, ...] = ()) -> None:
        self.env = env
        self.args = args

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Request:
        args = []
        for n in range(1, 64):
            value = env.get(f"agi_arg_{n}")
            if value is None:
                break
            args.append(value)
        return cls(env, tuple(args))


Hook = Generator[str, Reply, Verdict]
"""Yields AGI command lines, is sent back each ``Reply``, returns a ``Verdict``."""


class ReplyReader:
    """Turns the lines Asterisk sends after a command into one ``Reply``: HANGUP
    notifications (they come between commands, res_agi ``run_agi``) are noted and
    skipped, a ``520-`` usage text is swallowed up to its ``520 `` end line."""

    _MAX_LINES = 200  # a bound, against a peer that never sends a reply line

    def __init__(self) -> None:
        self.hangup = False
        self._usage = False
        self._lines = 0

    def feed(self, line: str) -> Reply | None:
        """The reply, once ``line`` completes it; "" (end of input) gives CLOSED."""
        self._lines += 1
        if not line or self._lines > self._MAX_LINES:
            return CLOSED.hung_up() if self.hangup else CLOSED
        text = line.rstrip("\r\n")
        if self._usage:
            return Reply(520, hangup=self.hangup) if text.startswith("520 ") else None
        if text == "HANGUP":
            self.hangup = True
            return None
        if text.startswith("520-"):
            self._usage = True
            return None
        reply = parse_reply(text)
        return reply.hung_up() if self.hangup else reply


def run_process(
    hook: Hook,
    send: Callable[[str], None],
    read_line: Callable[[], str],
    hung_up: Callable[[], bool] = lambda: False,
) -> Verdict:
    """Drive ``hook`` over a line transport (process AGI: stdout/stdin). ``read_line``
    returns "" at end of input, like ``file.readline``; ``hung_up`` says whether Asterisk
    sent SIGHUP (its process-AGI form of the HANGUP notification)."""
    try:
        command = next(hook)
        while True:
            send(command + "\n")
            reader = ReplyReader()
            reply = None
            while reply is None:
                reply = reader.feed(read_line())
            if hung_up() and not reply.hangup:
                reply = reply.hung_up()
            command = hook.send(reply)
            if reply.code == 0:
                hook.close()
                return Verdict("HANGUP", "the peer closed")
    except StopIteration as stop:
        verdict: Verdict = stop.value
        return verdict


class _Quiet:
    """pyst2 writes its debugging (every env line, every command) to stderr, which
    Asterisk copies to its console for every call; it goes nowhere here."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        return None


def run_script(route: str, routes: Mapping[str, Callable[[Request], Hook]]) -> int:
    """Run hook ``routes[route]`` over stdin/stdout (``agi_handlers.main_process``)."""
    import signal
    import sys

    try:
        from asterisk.agi import AGI  # pyst2: reads the agi_* block, handles SIGHUP
    except ImportError as exc:
        sys.stderr.write(f"autoretry {route}: pyst2 is missing for {sys.executable}: {exc}\n")
        sys.stdout.write("FAILURE\n")  # Asterisk then sets AGISTATUS=FAILURE
        return 1
    agi = AGI(stdin=sys.stdin, stdout=sys.stdout, stderr=_Quiet())
    hook = routes[route](Request.from_env(agi.env))

    def send(command: str) -> None:
        agi.send_command(command)

    try:
        verdict = run_process(hook, send, sys.stdin.readline, lambda: bool(agi._got_sighup))
    except OSError:  # Asterisk closed the pipe (the channel and the AGI are gone)
        return 0
    finally:
        # Asterisk sends SIGHUP when the channel hangs up, also while we exit, when
        # Python has put the default action (terminate) back: ignore it from here on.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    sys.stderr.write(f"autoretry {route}: {verdict.status} {verdict.detail}\n")
    return 0
