"""The AMI actions about the manager session itself: Login, Logoff, Ping, Events, Filter.

Also ``reply``, the ``Response``/``ActionID``/``Message`` answer every action sends (as in
ami-basics.ami). Kept apart from ``sim_actions``, which dispatches actions and answers the
ones about calls and the CLI, because these only read and set the session's own state
(authentication, event mask, filters); ``reply`` sits here, below ``sim_actions``, so both
modules use it without an import cycle.
"""

from __future__ import annotations

import hmac
import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ami_listener import sim_commands
from ami_listener.sim_wire import Message, Session, get, parse_event_mask

if TYPE_CHECKING:
    from ami_listener.simulator import Simulator


def reply(
    session: Session,
    request: Message,
    response: str,
    text: str | None,
    extra: Message | None = None,
) -> None:
    message: Message = [("Response", response)]
    action_id = get(request, "ActionID")
    if action_id:
        message.append(("ActionID", action_id))
    if text is not None:
        message.append(("Message", text))
    message.extend(extra or [])
    session.send(message)


async def login(sim: Simulator, session: Session, message: Message) -> bool:
    if session.authenticated:
        reply(session, message, "Success", "Already authenticated")
        return True
    user_ok = hmac.compare_digest(get(message, "Username").encode(), sim.username.encode())
    secret_ok = hmac.compare_digest(get(message, "Secret").encode(), sim.secret.encode())
    if not (user_ok and secret_ok):
        reply(session, message, "Error", "Authentication failed")
        return False  # Asterisk ends the session after a failed login
    session.authenticated, session.username = True, sim.username
    session.readable = None if sim.read == sim_commands.ALL else sim.read
    session.event_mask = parse_event_mask(get(message, "Events", "on"))
    reply(session, message, "Success", "Authentication accepted")
    sim.notify()  # a test may be waiting for a client to log in
    booted: Message = [
        ("Event", "FullyBooted"),
        ("Privilege", "system,all"),
        ("Uptime", str(int(time.monotonic() - sim.started_monotonic))),
        ("LastReload", str(int(time.monotonic() - sim.started_monotonic))),
        ("Status", "Fully Booted"),
    ]
    if session.wants(booted):
        session.send(booted)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
    local = session.writer.get_extra_info("sockname") or ("127.0.0.1", 0)
    remote = session.writer.get_extra_info("peername") or ("127.0.0.1", 0)
    auth: Message = [
        ("Event", "SuccessfulAuth"),
        ("Privilege", "security,all"),
        ("EventTV", stamp),
        ("Severity", "Informational"),
        ("Service", "AMI"),
        ("EventVersion", "1"),
        ("AccountID", sim.username),
        ("SessionID", f"0x{id(session):x}"),
        ("LocalAddress", f"IPV4/TCP/{local[0]}/{local[1]}"),
        ("RemoteAddress", f"IPV4/TCP/{remote[0]}/{remote[1]}"),
        ("UsingPassword", "0"),
        ("SessionTV", stamp),
    ]
    if sim.rng.random() < 0.5:  # README point 11: may come after the next action's reply
        session.deferred.append(auth)
    elif session.wants(auth):
        session.send(auth)
    return True


async def logoff(sim: Simulator, session: Session, message: Message) -> bool:
    reply(session, message, "Goodbye", "Thanks for all the fish.")
    return False


async def ping(sim: Simulator, session: Session, message: Message) -> bool:
    reply(
        session, message, "Success", None, [("Ping", "Pong"), ("Timestamp", f"{time.time():.6f}")]
    )
    return True


async def events(sim: Simulator, session: Session, message: Message) -> bool:
    session.event_mask = parse_event_mask(get(message, "EventMask", "on"))
    state = "Off" if session.event_mask == frozenset() else "On"
    reply(session, message, "Success", None, [("Events", state)])
    return True


async def filter_(sim: Simulator, session: Session, message: Message) -> bool:
    if not sim.allow_filter:  # Filter needs the "system" write privilege
        reply(session, message, "Error", "Permission denied")
        return True
    if get(message, "Operation", "Add").lower() != "add":
        reply(session, message, "Error", "Unknown operation")
        return True
    expression = get(message, "Filter")
    if not expression:
        reply(session, message, "Error", "Filter must be specified")
        return True
    try:
        session.filters.add(expression)
    except re.error:
        reply(
            session,
            message,
            "Error",
            "Filter did not compile.  Check the syntax of the filter given.",
        )
        return True
    reply(session, message, "Success", "Success")
    return True
