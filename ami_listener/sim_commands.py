"""Manager privileges, ``ListCommands`` and the CLI behind ``Command``, for the simulator.

What Asterisk 20's manager.c and pbx.c do, for the few things ``autoretry check-config``
asks: which actions a user's ``write =`` classes allow (an action is refused with
"Permission denied" unless the user holds one of its classes; class-less actions are open),
what ``ListCommands`` lists, and the CLI commands ``dialplan show``, ``manager show user``
and ``core show version``. The CLI output goes back as ``Output:`` lines, one per line,
with ``Response: Error`` when the command fails (``ast_cli_command`` returns
RESULT_FAILURE and the CLI adds "Command '...' failed.").
"""

from __future__ import annotations

from collections.abc import Collection

PERMS = (
    "system",
    "call",
    "log",
    "verbose",
    "command",
    "agent",
    "user",
    "config",
    "dtmf",
    "reporting",
    "cdr",
    "dialplan",
    "originate",
    "agi",
    "cc",
    "aoc",
    "test",
    "security",
    "message",
)
"""manager.c ``perms[]`` in its order (without ``all`` and ``none``)."""

ALL = frozenset(PERMS)

# Action (as ListCommands spells it) -> (synopsis, classes any one of which allows it).
# Only the actions the simulator answers; Asterisk keeps the list sorted by name.
ACTIONS: dict[str, tuple[str, frozenset[str]]] = {
    "Command": ("Execute Asterisk CLI Command.", frozenset({"command"})),
    "CoreShowChannels": ("List currently active channels.", frozenset({"system", "reporting"})),
    "Events": ("Control Event Flow.", frozenset()),
    "Filter": (
        "Dynamically add filters for the current manager session.",
        frozenset({"system"}),
    ),
    "Hangup": ("Hangup channel.", frozenset({"system", "call"})),
    "ListCommands": ("List available manager commands.", frozenset()),
    "Login": ("Login Manager.", frozenset()),
    "Logoff": ("Logoff Manager.", frozenset()),
    "Originate": ("Originate a call.", frozenset({"originate"})),
    "Ping": ("Keepalive command.", frozenset()),
    "UserEvent": ("Send an arbitrary event.", frozenset({"user"})),
}
_BY_LOWER = {name.lower(): classes for name, (_, classes) in ACTIONS.items()}

VERSION_LINE = (
    "Asterisk 20.20.1 built by root @ vm on a x86_64 running Linux on 2026-11-28 10:12:53 UTC"
)
"""``core show version`` as recorded (ami-basics.ami)."""

BLACKLIST = (("module", "load"), ("module", "unload"))


def parse_perms(text: str) -> frozenset[str]:
    """manager.conf ``read =`` / ``write =``: comma-separated classes, ``all``, ``none``.
    Unknown names are ignored, as manager.c ``get_perm`` does."""
    names = {part.strip().lower() for part in text.split(",")}
    if "all" in names:
        return ALL
    return frozenset(names & ALL)


def may_run(write: frozenset[str], action: str) -> bool:
    """Whether a user holding ``write`` may run ``action`` (unknown actions: yes, so the
    caller answers "Invalid/unknown command" as Asterisk does)."""
    classes = _BY_LOWER.get(action.lower(), frozenset())
    return not classes or bool(classes & write)


def authority_text(classes: frozenset[str]) -> str:
    """manager.c ``authority_to_str``: the classes in ``perms[]`` order, then ``all``."""
    if not classes:
        return "<none>"
    return ",".join([p for p in PERMS if p in classes] + ["all"])


def user_authority_text(classes: frozenset[str]) -> str:
    """manager.c ``user_authority_to_str`` (``manager show user``): ``all`` only when
    every class is held."""
    if not classes:
        return "<none>"
    names = [p for p in PERMS if p in classes]
    return ",".join(names + (["all"] if classes >= ALL else []))


def list_commands(write: frozenset[str]) -> list[tuple[str, str]]:
    """The ``ListCommands`` reply body: ``Name: Synopsis (Priv: classes)`` per action."""
    return [
        (name, f"{synopsis} (Priv: {authority_text(classes)})")
        for name, (synopsis, classes) in sorted(ACTIONS.items(), key=lambda a: a[0].lower())
        if not classes or classes & write
    ]


def run_cli(
    command: str,
    *,
    username: str,
    read: frozenset[str],
    write: frozenset[str],
    contexts: Collection[str] | None,
) -> tuple[bool, list[str]]:
    """(succeeded, output lines) of one CLI command, as ``asterisk -rx`` would print."""
    words = command.split()
    lowered = [w.lower() for w in words]
    if lowered[:2] == ["dialplan", "show"] and len(words) <= 3:
        return _dialplan_show(command, words[2] if len(words) == 3 else None, contexts)
    if lowered[:3] == ["manager", "show", "user"] and len(words) == 4:
        return True, _manager_show_user(words[3], username, read, write)
    if lowered == ["core", "show", "version"]:
        return True, [VERSION_LINE]
    first = words[0] if words else ""
    return False, [
        f"No such command '{command}' (type 'core show help {first}' for other possible commands)"
    ]


def blacklisted(command: str) -> bool:
    words = tuple(w.lower() for w in command.split()[:2])
    return words in BLACKLIST


def _dialplan_show(
    command: str, what: str | None, contexts: Collection[str] | None
) -> tuple[bool, list[str]]:
    # The simulator knows context names only (None: every context exists), no extensions,
    # so ``exten@context`` is answered for the context alone.
    context = what.rpartition("@")[2] if what else None
    if context is not None and contexts is not None and context not in contexts:
        return False, [
            f"There is no existence of '{context}' context",
            f"Command '{command}' failed.",
        ]
    shown = [context] if context is not None else sorted(contexts or ())
    lines: list[str] = []
    for name in shown:
        lines += [f"[ Context '{name}' created by 'pbx_config' ]", ""]
    plural = "context" if len(shown) == 1 else "contexts"
    lines.append(f"-= 0 extensions (0 priorities) in {len(shown)} {plural}. =-")
    return True, lines


def _manager_show_user(
    name: str, username: str, read: frozenset[str], write: frozenset[str]
) -> list[str]:
    if name.lower() != username.lower():  # manager.c compares user names case-insensitively
        return [f"There is no manager called {name}"]
    return [
        "",
        f"          username: {username}",
        "            secret: <Set>",
        "               ACL: no",
        f"         read perm: {user_authority_text(read)}",
        f"        write perm: {user_authority_text(write)}",
        "   displayconnects: yes",
        "allowmultiplelogin: yes",
        "         Variables: ",
    ]
