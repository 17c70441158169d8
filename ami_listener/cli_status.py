"""``autoretry status``: one screen for an operator at a terminal.

Two sources: the database (read only: calls in flight, pending dials by hour, the last
errors, the webhook outbox), and the running daemon's API for what only it knows (its
AMI connection, and its counters since start from ``/metrics``). A daemon that does not
answer is said so, and the database part is still shown. The exit status is 0 when the
daemon answers healthy, else 1 with the reason on stderr (usable from a monitoring check).
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from . import store_status
from .cli_table import positive
from .config import Settings, split_listen
from .core.execution import iso
from .errors import StoreError
from .metrics import Samples, parse
from .store import MIGRATIONS, Store
from .store_outbox import OutboxEvent

LoadSettings = Callable[[argparse.Namespace], Settings]
HOURS = 24  # pending dials are shown per UTC hour for this many hours
PER_ROW = 6  # hours per line: 24 hours in 4 lines
IN_FLIGHT = 10  # live attempts listed (the count covers all)


def add_parser(commands: Any, load_settings: LoadSettings) -> None:
    """Register ``status`` on the top-level subparsers (``commands``)."""
    status = commands.add_parser(
        "status",
        help="one-screen summary: daemon and AMI, calls in flight, pending dials, errors",
        description="Daemon and AMI state (asked of the running daemon), calls in flight, "
        f"pending dials per hour for the next {HOURS} h, the latest failed or error "
        "attempts, and the webhook outbox. Exit 1 if the daemon is down or unhealthy.",
    )
    status.add_argument(
        "--errors", type=positive, default=5, metavar="N", help="latest errors shown (5)"
    )
    status.set_defaults(func=lambda args: cmd_status(args, load_settings(args)))


# ---- the two sources --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Database:
    live: int
    in_flight: list[store_status.AttemptLine]
    pending: store_status.Pending
    errors: list[store_status.AttemptLine]
    outbox_depth: int
    dead: int
    dead_latest: list[OutboxEvent]


def read_database(settings: Settings, now: datetime, errors: int = 5) -> Database:
    path = settings.database.path
    if not path.exists():  # reading must not create an empty database somewhere
        raise StoreError(f"no database at {path} (run 'autoretry migrate' first)")
    # migrate=False: a status command writes nothing, not even a migration.
    with Store.open(path, synchronous=settings.database.synchronous, migrate=False) as store:
        if MIGRATIONS.pending(store.db):
            raise StoreError(f"the database at {path} needs 'autoretry migrate'")
        gauges = store_status.gauges(store)
        dead, dead_latest = store_status.dead_events(store)
        return Database(
            live=gauges.calls_live,
            in_flight=store_status.live_attempts(store, IN_FLIGHT),
            pending=store_status.pending(store, now, HOURS),
            errors=store_status.last_errors(store, errors),
            outbox_depth=gauges.outbox_depth,
            dead=dead,
            dead_latest=dead_latest,
        )


@dataclass(frozen=True, slots=True)
class Daemon:
    where: str
    health: dict[str, Any] | None = None  # /healthz's answer; None: nobody answered
    problem: str | None = None
    samples: Samples = field(default_factory=dict)  # /metrics, when served

    @property
    def healthy(self) -> bool:
        return self.health is not None and self.health.get("ok") is True


def ask_daemon(settings: Settings, timeout_s: float = 2.0) -> Daemon:
    host, port = split_listen(settings.api.listen)
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a wildcard bind is reached on loopback
        host = "127.0.0.1"
    where = f"{host}:{port}"
    token = settings.api.token.get_secret_value() if settings.api.token else ""
    try:
        status, body = _get(host, port, "/healthz", {}, timeout_s)
        health = json.loads(body)
        if status not in (200, 503) or not isinstance(health, dict):
            return Daemon(where, problem=f"/healthz answered HTTP {status}: not autoretry?")
        status, body = _get(host, port, "/metrics", {"Authorization": f"Bearer {token}"}, timeout_s)
    except OSError as exc:
        return Daemon(where, problem=f"not reachable ({exc.strerror or type(exc).__name__})")
    except ValueError:
        return Daemon(where, problem="/healthz did not answer JSON: not autoretry?")
    try:
        samples = parse(body.decode()) if status == 200 else {}
    except ValueError:  # an older daemon, or something else on the port
        samples = {}
    return Daemon(where, health, samples=samples)


def _get(
    host: str, port: int, path: str, headers: dict[str, str], timeout_s: float
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# ---- the screen -------------------------------------------------------------------------
def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    now = datetime.now(UTC)
    database = read_database(settings, now, args.errors)
    daemon = ask_daemon(settings)
    for line in render(database, daemon, now):
        print(line)
    if daemon.healthy:
        return 0
    reason = daemon.problem or "unhealthy: " + _checks(daemon.health or {})
    print(f"autoretry: daemon at {daemon.where} {reason}", file=sys.stderr)
    return 1


def _ago(delta: timedelta) -> str:
    s = max(0, int(delta.total_seconds()))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _checks(health: dict[str, Any]) -> str:
    words = {"ami": ("AMI connected", "AMI NOT connected")}
    words["database"] = ("database writable", "database NOT writable")
    parts = []
    for name, ok in health.items():
        if name == "ok":
            continue
        yes, no = words.get(name, (f"{name} ok", f"{name} NOT ok"))
        parts.append(yes if ok else no)
    return ", ".join(parts)


def _count(samples: Samples, name: str, **labels: str) -> int:
    return int(samples.get((name, tuple(sorted(labels.items()))), 0))


def _since_start(samples: Samples) -> str:
    attempts = int(sum(v for (n, _), v in samples.items() if n == "autoretry_attempts_total"))
    retries = _count(samples, "autoretry_retries_scheduled_total")
    reconnects = _count(samples, "autoretry_ami_reconnects_total")
    hooks = "webhook_deliveries_total"
    delivered, failed, dead = (
        _count(samples, f"autoretry_{hooks}", result=r) for r in ("delivered", "failed", "dead")
    )
    return (
        f"since start: {attempts} attempts ended, {retries} retries scheduled, "
        f"{reconnects} AMI reconnects; webhooks {delivered} delivered, {failed} failed, "
        f"{dead} dead"
    )


def render(db: Database, daemon: Daemon, now: datetime) -> list[str]:
    """The screen as lines (at most ~25 with the defaults)."""
    lines = [f"autoretry status at {iso(now)}"]
    if daemon.health is None:
        lines.append(f"daemon     {daemon.where}: {daemon.problem}")
    else:
        state = "up" if daemon.healthy else "UNHEALTHY"
        lines.append(f"daemon     {state} at {daemon.where}: {_checks(daemon.health)}")
        if daemon.samples:
            lines.append(f"           {_since_start(daemon.samples)}")

    lines.append(f"in flight  {db.live} call{'s' if db.live != 1 else ''}")
    for a in db.in_flight:
        lines.append(
            f"  call {a.call_id} attempt {a.number}  {a.status:<11}  since "
            f"{iso(a.started_at)} ({_ago(now - a.started_at)})  {a.to_number} {a.target}"
        )
    if db.live > len(db.in_flight):
        lines.append(f"  ... and {db.live - len(db.in_flight)} more")

    p = db.pending
    statuses = ", ".join(f"{s} {n}" for s, n in sorted(p.by_status.items()))
    lines.append(
        f"pending    {p.total} call{'s' if p.total != 1 else ''}"
        + (f" ({statuses})" if statuses else "")
        + f": {p.due_now} due now, {sum(p.hours)} in the next {len(p.hours)} h, "
        f"{p.later} later"
        + (f", {p.unscheduled} in batches not scheduled" if p.unscheduled else "")
    )
    if sum(p.hours):
        lines.append("  by UTC hour (hour: dials):")
        cells = [
            f"{(p.first_hour_at + timedelta(hours=i)):%H}:00 {n:>5}" for i, n in enumerate(p.hours)
        ]
        for i in range(0, len(cells), PER_ROW):
            lines.append("  " + "   ".join(cells[i : i + PER_ROW]))

    lines.append("last errors (latest attempts that ended failed or error)")
    for a in db.errors:
        lines.append(
            f"  {iso(a.ended_at or a.started_at)}  call {a.call_id} attempt {a.number}  "
            f"{a.status}  {a.reason or '(no reason)'}"
        )
    if not db.errors:
        lines[-1] = "last errors none"

    lines.append(f"webhooks   {db.outbox_depth} to deliver, {db.dead or 'none'} dead")
    for event in db.dead_latest:
        lines.append(f"  dead {event.id} ({event.status}): {event.last_error or '?'}")
    if db.dead:
        lines.append("  see 'autoretry webhooks list --state dead', then '... replay'")
    return lines
