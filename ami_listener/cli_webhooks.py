"""``autoretry webhooks list|replay``: look at the webhook outbox, re-queue dead events.

Works on the database file directly, so it runs while the daemon does: a replayed event
is picked up at the daemon's next look at the outbox (within ``webhooks.POLL_S``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from .cli_table import open_existing, positive, print_table
from .config import Settings
from .core.execution import iso
from .errors import IllegalTransition, NotFound, ValidationError
from .nudge import nudge_daemon
from .store_outbox import parse_event_id

LoadSettings = Callable[[argparse.Namespace], Settings]
STATES = ("pending", "delivered", "dead")


def add_parser(commands: Any, load_settings: LoadSettings) -> None:
    """Register ``webhooks`` on the top-level subparsers (``commands``)."""
    webhooks = commands.add_parser(
        "webhooks",
        help="list webhook events, replay dead ones",
        description="Look at the webhook outbox: every status change is one event, "
        "delivered at least once; events that failed until webhooks.max_age_s are dead.",
    )
    sub = webhooks.add_subparsers(dest="webhooks_command", metavar="ACTION", required=True)

    ls = sub.add_parser(
        "list",
        help="list events, oldest first",
        description="One line per event: id, call, status, state, attempts, last error.",
    )
    ls.add_argument(
        "--state",
        choices=[*STATES, "undelivered", "all"],
        default="undelivered",
        help="which events (default: undelivered = pending and dead)",
    )
    ls.add_argument("--limit", type=positive, default=100, metavar="N", help="default 100")
    ls.set_defaults(func=lambda args: cmd_list(args, load_settings(args)))

    replay = sub.add_parser(
        "replay",
        help="send dead events again",
        description="Set dead events back to pending so the daemon delivers them again. "
        "An event older than webhooks.max_age_s gets one more try per replay: replay once "
        "the receiver is back. Name events, or use --all-dead.",
    )
    replay.add_argument("event_ids", nargs="*", metavar="EVENT_ID")
    replay.add_argument("--all-dead", action="store_true", help="every dead event")
    replay.set_defaults(func=lambda args: cmd_replay(args, load_settings(args)))


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    wanted = {"undelivered": ("pending", "dead"), "all": (None,)}.get(args.state, (args.state,))
    with open_existing(settings) as store:
        found = [e for state in wanted for e in store.outbox_list(state=state, limit=args.limit)]
    events = sorted(found, key=lambda e: e.seq)[: args.limit]
    if not events:
        print("no webhook events" + ("" if args.state == "all" else f" ({args.state})"))
        return 0
    rows = [("ID", "CALL", "STATUS", "STATE", "ATTEMPTS", "NEXT TRY", "LAST ERROR")]
    for e in events:
        next_try = (iso(e.next_at) or "-") if e.state == "pending" else "-"
        error = " ".join((e.last_error or "-").split())  # one line per event, always
        rows.append((e.id, e.call_id, e.status, e.state, str(e.attempts), next_try, error))
    print_table(rows)
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    ids: list[str] = list(dict.fromkeys(args.event_ids))  # once each, in the order given
    if args.all_dead == bool(ids):
        raise ValidationError("name the events to replay, or use --all-dead (not both)")
    bad = [i for i in ids if parse_event_id(i) is None]
    if bad:
        raise NotFound(f"not an event id: {', '.join(bad)} (ids look like evt_12_<call id>)")
    with open_existing(settings) as store:
        if args.all_dead:
            count = store.outbox_replay(None)
        else:
            # Check every id before changing anything: all of them are replayed, or none.
            for event_id in ids:
                try:
                    event = store.outbox_get(event_id)
                except NotFound:
                    raise NotFound(f"no webhook event {event_id}") from None
                if event.state != "dead":
                    raise IllegalTransition(
                        f"event {event_id} is {event.state}; only dead events are replayed"
                    )
            count = store.outbox_replay(ids)
    print(f"replayed {count} event{'' if count == 1 else 's'}")
    if count:
        nudge_daemon(settings)  # deliver now rather than at the sender's next look
    return 0
