"""``autoretry call NUMBER --target T``: place a call from the command line.

It builds the same Make Call body an API client would send and hands it to the same
function the ``POST /call`` handler uses (``placing.place_call``), so every check (target,
number, variables, retry_config, webhook host, idempotency) is the API's. The call is
written to the configured database as ``queued``; the running daemon dials it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from .config import Settings
from .core.execution import iso
from .errors import StoreError
from .nudge import nudge_daemon
from .placing import RequestInvalid
from .placing import place_call as place
from .store import Store

LoadSettings = Callable[[argparse.Namespace], Settings]


def add_parser(commands: Any, load_settings: LoadSettings) -> None:
    """Register ``call`` on the top-level subparsers (``commands``)."""
    call = commands.add_parser(
        "call",
        help="place a call (the same checks as POST /call)",
        description="Queue a call to NUMBER through the configured target; the running "
        "daemon dials it and retries it as --retry-config says.",
    )
    call.add_argument("number", metavar="NUMBER", help="E.164, e.g. +14155550100")
    call.add_argument("--target", required=True, metavar="T", help="configured target name")
    call.add_argument("--retry-config", metavar="JSON", help="Bolna retry_config (JSON)")
    call.add_argument("--from", dest="from_number", metavar="NUMBER", help="caller number")
    call.add_argument(
        "--at", metavar="ISO8601", help="when to dial (with a UTC offset; default now)"
    )
    call.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="channel variable (repeatable); becomes user_data",
    )
    call.add_argument("--bypass-guardrails", action="store_true", help="ignore the calling hours")
    call.add_argument("--webhook-url", metavar="URL", help="where this call's events go")
    call.add_argument(
        "--idempotency-key", metavar="KEY", help="a repeat with the same key places nothing"
    )
    call.set_defaults(func=lambda args: cmd_call(args, load_settings(args)))


def body_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The Make Call JSON body these arguments stand for."""
    body: dict[str, Any] = {"agent_id": args.target, "recipient_phone_number": args.number}
    if args.retry_config is not None:
        try:
            body["retry_config"] = json.loads(args.retry_config)
        except ValueError:
            raise RequestInvalid(
                [{"field": "retry_config", "message": "--retry-config is not valid JSON"}]
            ) from None
    if args.from_number is not None:
        body["from_phone_number"] = args.from_number
    if args.at is not None:
        body["scheduled_at"] = args.at
    if args.var:
        user_data = {}
        for item in args.var:
            name, sep, value = item.partition("=")
            if not sep:
                raise RequestInvalid(
                    [{"field": "user_data", "message": f"--var {item!r} is not NAME=VALUE"}]
                )
            user_data[name] = value
        body["user_data"] = user_data
    if args.bypass_guardrails:
        body["bypass_call_guardrails"] = True
    if args.webhook_url is not None:
        body["webhook_url"] = args.webhook_url
    return body


def cmd_call(args: argparse.Namespace, settings: Settings) -> int:
    body = body_from_args(args)
    path = settings.database.path
    if not path.exists():  # the daemon's database, not a new one somewhere it never reads
        raise StoreError(f"no database at {path} (run 'autoretry migrate' first)")
    now = datetime.now(UTC)
    with Store.open(path, synchronous=settings.database.synchronous) as store:
        call, created = place(store, settings, body, now, lambda: uuid4().hex, args.idempotency_key)
    if not created:
        print(f"{call.id}: already placed with this idempotency key; nothing new queued")
        return 0
    print(call.id)
    when = "as soon as it is due" if call.scheduled_at is None else f"at {iso(call.scheduled_at)}"
    who = (
        "the daemon dials it"
        if nudge_daemon(settings)
        else "no daemon answered on [api].listen; 'autoretry serve' dials it"
    )
    print(f"queued call to {call.to_number} via target {call.target}; {who} {when}")
    return 0
