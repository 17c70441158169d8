"""The AMI actions the simulator answers, with Asterisk 20's replies (manager.c texts).

``handle`` checks login and privileges and dispatches through ``HANDLERS``. The actions
about calls (Originate, Hangup, CoreShowChannels, UserEvent) and the CLI (ListCommands,
Command) are here; the ones about the session itself (Login, Logoff, Ping, Events, Filter)
and ``reply``, which every action answers with, are in ``sim_session``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ami_listener import sim_commands
from ami_listener.sim_channels import UNKNOWN, core_show_channel
from ami_listener.sim_session import events, filter_, login, logoff, ping, reply
from ami_listener.sim_wire import Message, Session, get, get_all

if TYPE_CHECKING:
    from ami_listener.simulator import Simulator

Handler = Callable[["Simulator", Session, Message], Awaitable[bool]]

_CALLERID = re.compile(r'^\s*"?(?P<name>[^"<]*?)"?\s*<(?P<num>[^>]*)>\s*$')


def parse_callerid(text: str) -> tuple[str, str]:
    """``"Lab Retry" <1000>`` -> ("1000", "Lab Retry"); missing parts are ``<unknown>``."""
    text = text.strip()
    match = _CALLERID.match(text)
    if match:
        return match["num"].strip() or UNKNOWN, match["name"].strip() or UNKNOWN
    if text and re.fullmatch(r"[0-9+*#]+", text):
        return text, UNKNOWN
    return UNKNOWN, text or UNKNOWN


def _true(value: str) -> bool:
    return value.strip().lower() in ("yes", "true", "y", "t", "1", "on")


async def handle(sim: Simulator, session: Session, message: Message) -> bool:
    """Answer one action; False when the connection must close afterwards."""
    pending, session.deferred = session.deferred, []
    try:
        action = get(message, "Action")
        if not action:
            reply(session, message, "Error", "Missing action in request")
            return True
        name = action.lower()
        if not session.authenticated and name not in ("login", "logoff", "challenge"):
            reply(session, message, "Error", "Permission denied")
            return True
        handler = HANDLERS.get(name)
        if handler is None:
            text = (
                f"Invalid/unknown command: {action}. "
                "Use Action: ListCommands to show available commands."
            )
            reply(session, message, "Error", text)
            return True
        if session.authenticated and not sim_commands.may_run(sim.write, name):
            reply(session, message, "Error", "Permission denied")  # manager.c process_message
            return True
        return await handler(sim, session, message)
    finally:
        for event in pending:
            if session.wants(event):
                session.send(event)


async def hangup(sim: Simulator, session: Session, message: Message) -> bool:
    name = get(message, "Channel")
    if not name:
        reply(session, message, "Error", "No channel specified")
        return True
    found = sim.find_channel(name)
    if found is None:
        reply(session, message, "Error", "No such channel")
        return True
    cause_text = get(message, "Cause", "16")
    if not cause_text.isdigit():
        reply(session, message, "Error", "Invalid cause")
        return True
    reply(session, message, "Success", "Channel Hungup")
    channel, run = found
    run.request_hangup(channel, int(cause_text))
    return True


async def core_show_channels(sim: Simulator, session: Session, message: Message) -> bool:
    action_id = get(message, "ActionID")
    reply(
        session,
        message,
        "Success",
        None,
        [("EventList", "start"), ("Message", "Channels will follow")],
    )
    channels = sim.live_channels()
    now = time.monotonic()
    for channel in channels:
        session.send(core_show_channel(channel, action_id, now))
    done: Message = [("Event", "CoreShowChannelsComplete")]
    if action_id:
        done.append(("ActionID", action_id))
    session.send([*done, ("EventList", "Complete"), ("ListItems", str(len(channels)))])
    return True


async def originate(sim: Simulator, session: Session, message: Message) -> bool:
    channel = get(message, "Channel")
    if not channel:
        reply(session, message, "Error", "Channel not specified")
        return True
    priority, timeout = get(message, "Priority", "1"), get(message, "Timeout", "30000")
    if not priority.isdigit():
        reply(session, message, "Error", "Invalid priority")
        return True
    if not timeout.isdigit():
        reply(session, message, "Error", "Invalid timeout")
        return True
    spec = sim.spec_for(channel)
    spec.context, spec.exten = get(message, "Context", "default"), get(message, "Exten", "s")
    spec.priority, spec.timeout_s = int(priority), int(timeout) / 1000
    spec.application, spec.data = get(message, "Application"), get(message, "Data")
    spec.cid_num, spec.cid_name = parse_callerid(get(message, "CallerID"))
    variables: list[tuple[str, str]] = []
    for header in get_all(message, "Variable"):
        for part in header.split(","):  # Asterisk splits Variable values on commas
            var, eq, value = part.partition("=")
            if eq and var.strip():
                variables.append((var.strip(), value))
    spec.variables = list(reversed(variables))  # Asterisk sets them last-first (VarSet order)
    spec.channel_id, spec.other_channel_id = (
        get(message, "ChannelId"),
        get(message, "OtherChannelId"),
    )
    spec.action_id = get(message, "ActionID")
    is_async = _true(get(message, "Async"))
    spec.result, spec.reply_to = ("event", None) if is_async else ("reply", session)
    if is_async:
        reply(session, message, "Success", "Originate successfully queued")
    run, task = sim.place(spec, "originate")
    if not is_async:
        # Asterisk handles a session's actions one at a time: a synchronous Originate
        # holds this connection's next action until the call is answered or has failed.
        waiter = asyncio.ensure_future(run.reply_sent.wait())
        try:
            await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if not run.reply_sent.is_set():
            reply(session, message, "Error", "Originate failed")
    return True


async def user_event(sim: Simulator, session: Session, message: Message) -> bool:
    """AMI ``UserEvent``: Asterisk sends every other header as an ``Event: UserEvent`` of
    class ``user`` to every client that wants it (the dialplan application does the same)."""
    name = get(message, "UserEvent")
    if not name:
        reply(session, message, "Error", "UserEvent needs a UserEvent header")
        return True
    body = [(k, v) for k, v in message if k.lower() not in ("action", "actionid", "userevent")]
    reply(session, message, "Success", None)
    sim.emit([[("Event", "UserEvent"), ("Privilege", "user,all"), ("UserEvent", name), *body]])
    return True


async def list_commands(sim: Simulator, session: Session, message: Message) -> bool:
    """Every action this user may run; no Message header (manager.c astman_start_ack)."""
    reply(session, message, "Success", None, sim_commands.list_commands(sim.write))
    return True


async def command(sim: Simulator, session: Session, message: Message) -> bool:
    """A CLI command; its output comes back as one ``Output:`` header per line."""
    cli = get(message, "Command")
    if not cli:
        reply(session, message, "Error", "No command provided")
        return True
    if sim_commands.blacklisted(cli):
        reply(session, message, "Error", "Command blacklisted")
        return True
    ok, lines = sim_commands.run_cli(
        cli, username=sim.username, read=sim.read, write=sim.write, contexts=sim.contexts
    )
    output = [("Output", line) for line in lines]
    reply(session, message, "Success" if ok else "Error", "Command output follows", output)
    return True


HANDLERS: dict[str, Handler] = {
    "login": login,
    "logoff": logoff,
    "ping": ping,
    "events": events,
    "filter": filter_,
    "hangup": hangup,
    "coreshowchannels": core_show_channels,
    "originate": originate,
    "userevent": user_event,
    "listcommands": list_commands,
    "command": command,
}
