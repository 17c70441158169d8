"""``autoretry calls list|show|cancel``: read and cancel calls in the database."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from . import store_status
from .cli_table import open_existing, positive, print_table
from .config import Settings
from .core.execution import iso
from .core.lifecycle import Cancel, advance
from .core.models import Attempt, Call, CallStatus
from .errors import IllegalTransition, NotFound
from .nudge import nudge_daemon
from .store import OutboxEvent
from .webhooks import NO_URL

LoadSettings = Callable[[argparse.Namespace], Settings]


def add_parser(commands: Any, load_settings: LoadSettings) -> None:
    """Register ``calls`` on the top-level subparsers (``commands``)."""
    calls = commands.add_parser(
        "calls",
        help="list, show or cancel calls",
        description="Look at calls and their attempts, or cancel one.",
    )
    sub = calls.add_subparsers(dest="calls_command", metavar="ACTION", required=True)

    ls = sub.add_parser("list", help="list calls, newest first", description="List calls.")
    ls.add_argument("--status", choices=[s.value for s in CallStatus], help="only this status")
    ls.add_argument("--limit", type=positive, default=50, metavar="N", help="default 50")
    ls.set_defaults(func=lambda args: cmd_list(args, load_settings(args)))

    show = sub.add_parser(
        "show",
        help="one call and its attempts",
        description="Print a call's timeline: each attempt with its cause, reason and the "
        "decision taken after it.",
    )
    show.add_argument("call_id", metavar="ID")
    show.set_defaults(func=lambda args: cmd_show(args, load_settings(args)))

    cancel = sub.add_parser(
        "cancel",
        help="cancel a call (a live attempt is let finish)",
        description="Cancel a call: a pending call ends now; a call on the wire is not "
        "hung up, but no retry follows it.",
    )
    cancel.add_argument("call_id", metavar="ID")
    cancel.add_argument("--reason", default="canceled from the command line", help="why")
    cancel.set_defaults(func=lambda args: cmd_cancel(args, load_settings(args)))


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    with open_existing(settings) as store:
        calls = store.list_calls(status=args.status, limit=args.limit)
    if not calls:
        print("no calls" + (f" with status {args.status}" if args.status else ""))
        return 0
    rows = [("ID", "STATUS", "TO", "TARGET", "RETRIES", "NEXT DIAL", "UPDATED")]
    for call in calls:
        rows.append(
            (
                call.id,
                call.status.value,
                call.to_number,
                call.target,
                _retries(call),
                iso(call.scheduled_at) or "-",
                iso(call.updated_at) or "-",
            )
        )
    print_table(rows)
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    with open_existing(settings) as store:
        try:
            call = store.get_call(args.call_id)
        except NotFound:
            raise NotFound(f"no call {args.call_id}") from None
        events = store_status.call_events(store, call.id)
    for line in timeline(call, events):
        print(line)
    return 0


def timeline(call: Call, events: Sequence[OutboxEvent] = ()) -> list[str]:
    """A call as lines a person reads top to bottom; ``events``: its webhook events."""
    lines = [
        f"call {call.id}: {call.target} -> {call.to_number}"
        + (f" (from {call.from_number})" if call.from_number else ""),
        f"  status     {call.status.value}, retries {_retries(call)}"
        + (", answered by voicemail" if call.answered_by_voice_mail else ""),
        f"  created    {iso(call.created_at)}   updated {iso(call.updated_at)}",
    ]
    if call.scheduled_at is not None:
        lines.append(f"  next dial  {iso(call.scheduled_at)}")
    if call.timezone:
        lines.append(f"  zone       {call.timezone}")
    if call.batch_id:
        lines.append(f"  batch      {call.batch_id}")
    if call.cancel_requested:
        lines.append(f"  {call.cancel_requested} requested: no retry after the live attempt")
    if call.error_message:
        lines.append(f"  error      {call.error_message}")
    config = call.retry_config.model_dump(mode="json", exclude_defaults=True)
    lines.append(f"  retry      {json.dumps(config, separators=(',', ':'))}")
    if not call.attempts:
        lines.append("  no attempts yet")
    for attempt in call.attempts:
        lines.extend(_attempt_lines(attempt))
    lines.extend(_webhook_lines(events))
    return lines


def _took(delta: timedelta) -> str:
    return f"{delta.total_seconds():.1f} s" if delta < timedelta(minutes=2) else f"{delta}"


def _webhook_lines(events: Sequence[OutboxEvent]) -> list[str]:
    """One summary line; then each event not (yet) delivered, with why."""
    if not events:
        return []
    states = {state: sum(e.state == state for e in events) for state in ("delivered", "pending")}
    states["dead"] = len(events) - sum(states.values())
    summary = ", ".join(f"{n} {state}" for state, n in states.items() if n)
    unsent = all(e.state == "delivered" and e.last_error == NO_URL for e in events)
    lines = [
        f"  webhooks   {len(events)} events: "
        + ("none sent (no webhook URL)" if unsent else summary)
    ]
    for e in events:
        if e.state != "delivered":
            error = f": {e.last_error}" if e.last_error else ""
            lines.append(f"    {e.id}  {e.status}  {e.state}, {e.attempts} tries{error}")
    return lines


def _attempt_lines(a: Attempt) -> list[str]:
    span = iso(a.started_at) or "-"
    if a.ended_at is not None:
        span += f" .. {iso(a.ended_at)}"
    took = f"  ({_took(a.ended_at - a.started_at)})" if a.ended_at is not None else ""
    lines = [f"  attempt {a.number}  {span}  {a.status.value}{took}"]
    if a.answered_at is not None:
        answered = f"{iso(a.answered_at)} (after {_took(a.answered_at - a.started_at)})"
        lines.append(
            f"    answered  {answered}" + (", voicemail" if a.answered_by_voice_mail else "")
        )
    facts = []
    if a.cause is not None:
        facts.append(f"Q.850 {a.cause}" + (f" ({a.cause_txt})" if a.cause_txt else ""))
    if a.tech_cause is not None:
        facts.append(f"SIP {a.tech_cause}")
    if a.dial_status:
        facts.append(f"DIALSTATUS {a.dial_status}")
    if a.amd_status:
        facts.append(f"AMD {a.amd_status}" + (f"/{a.amd_cause}" if a.amd_cause else ""))
    if a.permanent:
        facts.append("permanent")
    if facts:
        lines.append(f"    cause     {', '.join(facts)}")
    if a.reason:
        lines.append(f"    reason    {a.reason}")
    if a.decision:
        lines.append(f"    decision  {a.decision}")
    return lines


def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    event = Cancel(at=datetime.now(UTC), status=CallStatus.CANCELED, reason=args.reason)
    with open_existing(settings) as store:
        try:
            call, _ = store.transition(args.call_id, lambda c: advance(c, event))
        except NotFound:
            raise NotFound(f"no call {args.call_id}") from None
        except IllegalTransition as exc:
            raise IllegalTransition(f"cannot cancel call {args.call_id}: {exc}") from None
    nudge_daemon(settings)  # its webhook event goes out now, not at the daemon's next wake
    if call.status is CallStatus.CANCELED:
        print(f"canceled {call.id}")
    else:
        print(f"cancel requested for {call.id}: its live attempt ends first, no retry follows")
    return 0


def _retries(call: Call) -> str:
    """``1/3`` (used of allowed), or ``off`` when the call's retry_config is not enabled."""
    if not call.retry_config.enabled:
        return "off"
    return f"{call.retry_count}/{call.retry_config.max_retries}"
