"""``autoretry``: the command line, the program's outer edge.

It may read the clock and the environment; everything below it gets both as arguments.
Every expected failure is one line on stderr, ``autoretry: <reason>``, and exit status 1
(2 for bad usage); a traceback means a bug. Commands register themselves on the parser
(``calls`` in ``cli_calls.py``), so later ones (serve, demo, call, webhooks) slot in.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import NoReturn

import pydantic

from . import cli_call, cli_calls, cli_run, cli_status, cli_webhooks, doctor
from .config import Settings, config_path
from .core.execution import iso
from .core.models import VOICEMAIL, RetryableStatus, RetryConfig, normalize_number
from .core.policy import Rules, preview
from .core.windows import recipient_zone
from .errors import AutoretryError, ValidationError
from .placing import field_errors
from .store import Store

PROG = "autoretry"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints the whole usage block; one line is easier to read in a log.
        self.exit(2, f"{PROG}: {message} (see '{self.prog} --help')\n")


def _version() -> str:
    try:
        return metadata.version("asterisk-autoretry")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Bolna-style auto-retry of outbound calls on a self-hosted Asterisk PBX.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="config file (default: $AUTORETRY_CONFIG, else ./autoretry.toml)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    migrate = commands.add_parser(
        "migrate",
        help="create or upgrade the database schema",
        description="Apply pending database migrations; prints each one applied.",
    )
    migrate.set_defaults(func=cmd_migrate)

    check = commands.add_parser(
        "check-config",
        help="check the config, the spool, AMI, the dialplan and the webhook URL",
        description="Parse the config, then log in to AMI (may originate? receives the "
        "events we need? do the targets' contexts exist?), check the spool directory and "
        "post a signed test event to the webhook URL. One line per check: ok, warn, or "
        "FAIL with how to fix it; exit 1 if one fails.",
    )
    check.add_argument(
        "--offline",
        action="store_true",
        help="skip the AMI and webhook checks (before Asterisk is up)",
    )
    check.set_defaults(func=cmd_check_config)

    cli_call.add_parser(commands, _settings)
    cli_calls.add_parser(commands, _settings)
    cli_webhooks.add_parser(commands, _settings)
    cli_run.add_parser(commands, _settings)
    cli_status.add_parser(commands, _settings)

    pre = commands.add_parser(
        "preview",
        help="print every retry time a retry_config would produce",
        description="Show when each retry would be dialled if every attempt failed with "
        "--status, calling hours applied (from the config file if there is one). Jitter is "
        "left out so the times are exact.",
    )
    pre.add_argument("--retry-config", required=True, metavar="JSON", help="Bolna retry_config")
    pre.add_argument(
        "--status",
        default=RetryableStatus.NO_ANSWER.value,
        choices=[*(s.value for s in RetryableStatus), VOICEMAIL],
        help="how every attempt fails (default: no-answer)",
    )
    pre.add_argument(
        "--failed-at", type=_instant, metavar="ISO8601", help="first failure (default: now)"
    )
    pre.add_argument("--number", metavar="+E164", help="recipient, to guess the time zone")
    pre.add_argument("--timezone", metavar="ZONE", help="recipient's IANA time zone")
    pre.add_argument(
        "--attempt-minutes",
        type=_minutes,
        default=0.0,
        metavar="M",
        help="how long each attempt lasts before it fails (default: 0)",
    )
    pre.set_defaults(func=cmd_preview)
    return parser


def _config_first(argv: Sequence[str]) -> list[str]:
    """Accept ``--config FILE`` after the command too (``autoretry serve --config FILE``),
    as administrators type it, by moving it in front where argparse expects it."""
    rest, moved = list(argv), []
    for i, item in enumerate(rest):
        if item == "--":
            break
        if item == "--config" and i + 1 < len(rest):
            moved = rest[i : i + 2]
            del rest[i : i + 2]
            break
        if item.startswith("--config="):
            moved = [item]
            del rest[i]
            break
    return moved + rest


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(_config_first(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # --help, --version and usage errors have been printed
        return exc.code if isinstance(exc.code, int) else 2
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ValidationError as exc:
        return _fail(str(exc), 2)
    except AutoretryError as exc:
        return _fail(str(exc), 1)
    except KeyboardInterrupt:
        return 130


def _fail(reason: str, code: int) -> int:
    print(f"{PROG}: {' '.join(reason.split())}", file=sys.stderr)  # one line, always
    return code


def _settings(args: argparse.Namespace) -> Settings:
    # serve needs the secrets; reading and writing the database does not (the operator may
    # not be allowed to read the secrets file).
    return Settings.load(args.config, os.environ, need_secrets=args.command == "serve")


def _instant(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if at.utcoffset() is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset (e.g. Z or +02:00)")
    return at.astimezone(UTC)


def _minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of minutes >= 0, got {text!r}")
    return value


# ---- migrate ------------------------------------------------------------------------
def cmd_migrate(args: argparse.Namespace) -> int:
    db = _settings(args).database
    with Store.open(db.path, synchronous=db.synchronous, migrate=False) as store:
        applied = store.migrate()
    for name in applied:
        print(f"applied {name}")
    print(f"schema up to date: {db.path}" if not applied else f"migrated {db.path}")
    return 0


# ---- check-config ---------------------------------------------------------------------
def cmd_check_config(args: argparse.Namespace) -> int:
    path = config_path(args.config, os.environ)
    checks = doctor.run_checks(path, os.environ, offline=args.offline)
    for check in checks:
        print(check, flush=True)
    failed = sum(c.level == "FAIL" for c in checks)
    return _fail(f"{failed} check(s) failed", 1) if failed else 0


# ---- preview ------------------------------------------------------------------------
def cmd_preview(args: argparse.Namespace) -> int:
    settings = _optional_settings(args)
    limit = settings.dialer.max_retries_limit if settings else 3
    try:
        config = RetryConfig.model_validate_json(
            args.retry_config, context={"max_retries_limit": limit}
        )
    except pydantic.ValidationError as exc:
        raise ValidationError(f"--retry-config: {_pydantic_reason(exc)}") from None
    rules = settings.rules() if settings else Rules()
    failed_at: datetime = args.failed_at or datetime.now(UTC)
    try:
        number = args.number
        if number is not None:
            pattern = settings.dialer.number_pattern if settings else None
            number = normalize_number(number, allow_pattern=pattern)
        zone = recipient_zone(number or "", args.timezone, rules.default_timezone)
        plan = preview(config, failed_at, args.status, rules, zone, args.attempt_minutes)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    print(f"first attempt fails {args.status} at {iso(failed_at)}; recipient zone {zone.key}")
    if not plan:
        print("no retry" + ("" if config.enabled else " (retry_config.enabled is false)"))
    for retry_number, at, rescheduled in plan:
        local = at.astimezone(zone)
        moved = "  (moved into calling hours)" if rescheduled else ""
        print(f"retry {retry_number}: {iso(at)}  {local:%a %Y-%m-%d %H:%M %Z}{moved}")
    if plan and settings and settings.retry.jitter_s > 0:
        print(f"each time may be up to {settings.retry.jitter_s:g} s later ([retry].jitter_s)")
    return 0


def _optional_settings(args: argparse.Namespace) -> Settings | None:
    # preview must work on a machine with no config: only the implicit default may be absent.
    path = config_path(args.config, os.environ)
    explicit = args.config is not None or bool(os.environ.get("AUTORETRY_CONFIG"))
    if not explicit and not path.exists():
        return None
    return Settings.load(path, os.environ)


def _pydantic_reason(exc: pydantic.ValidationError) -> str:
    # The API's wording (placing.field_errors), so the CLI and POST /call say the same.
    parts = [(e["field"], e["message"]) for e in field_errors(exc)]
    return "; ".join(
        message if field == "body" else f"{field}: {message}" for field, message in parts
    )


if __name__ == "__main__":
    sys.exit(main())
