"""``autoretry serve`` (the daemon) and ``autoretry demo`` (daemon + AMI simulator).

The demo needs no Asterisk and no config: it starts the simulator on a free loopback
port, a daemon on a temporary database, places a handful of calls whose numbers busy,
ring out, fail permanently and answer, prints what happens as it happens, and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from . import daemon
from .config import Settings
from .core.lifecycle import Effect, Notify, new_call
from .core.models import FINAL_STATUSES, Call, CallRequest
from .errors import AutoretryError
from .simulator import Simulator
from .store import Store

DEMO_CALLS = [
    # (label, number, simulator script, retry_config)
    ("busy twice, then answers", "+12025550486", ["busy", "busy", "answer"], 3),
    ("rings out every time", "+12025550408", ["noanswer"], 2),
    ("unallocated number (permanent)", "+12025550404", ["unallocated"], 3),
    ("answers at once", "+12025550100", ["answer"], 3),
]
DEMO_INTERVAL_MIN = 0.05  # 3 s between retries
DEMO_SECRET = "demo-only"  # noqa: S105 - the demo's own simulator, on loopback, then gone


def add_parser(commands: Any, load_settings: Callable[[argparse.Namespace], Settings]) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the daemon (AMI listener, scheduler, API, webhooks, FastAGI)",
        description="Run until SIGTERM or SIGINT; SIGHUP re-reads the config (calls in "
        "flight go on). Committed state survives restarts.",
    )
    serve.set_defaults(func=lambda args: cmd_serve(args, load_settings))
    demo = commands.add_parser(
        "demo",
        help="watch retries happen against the built-in AMI simulator",
        description="Start the AMI simulator and the daemon on free loopback ports with a "
        "temporary database, place a few calls (busy, ring-out, unallocated, answer) with "
        "retries seconds apart, print the timeline, and exit. Needs no Asterisk.",
    )
    demo.add_argument("--seed", type=int, default=1, help="simulator event-order seed")
    demo.set_defaults(func=cmd_demo)


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def cmd_serve(args: argparse.Namespace, load_settings: Callable[..., Settings]) -> int:
    settings = load_settings(args)
    _logging(settings.logging.level)

    async def main() -> None:
        stop = asyncio.Event()
        reloads: asyncio.Queue[Settings] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        def reload() -> None:
            # SIGHUP (systemd ExecReload): re-read the file; a bad file keeps the old settings.
            try:
                reloads.put_nowait(load_settings(args))
            except AutoretryError as exc:
                logging.getLogger(__name__).error("reload refused, keeping settings: %s", exc)

        loop.add_signal_handler(signal.SIGHUP, reload)
        await daemon.run(settings, shutdown_trigger=stop.wait, reloads=reloads)

    asyncio.run(main())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="autoretry-demo-") as tmp:
        return asyncio.run(_demo(Path(tmp), args.seed, sys.stdout))


class Timeline:
    """Prints each committed change as one line, with what the webhook would carry."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._t0 = time.monotonic()
        self.changed = asyncio.Event()
        self.latest: dict[str, Call] = {}

    def __call__(self, call: Call, effects: tuple[Effect, ...]) -> None:
        self.latest[call.id] = call
        self.changed.set()
        for effect in effects:
            if isinstance(effect, Notify):
                self._print(call, effect)

    def _print(self, call: Call, effect: Notify) -> None:
        attempt = call.last_attempt
        parts = [f"{time.monotonic() - self._t0:6.2f}s", f"{call.to_number}", effect.status.value]
        if attempt is not None:
            parts.append(f"attempt {attempt.number}")
            if not attempt.live and attempt.reason:
                parts.append(f"cause: {attempt.reason}")
                parts.append(f"decision: {attempt.decision}")
        if call.scheduled_at and effect.status.value in ("scheduled", "rescheduled"):
            parts.append(f"next at {call.scheduled_at:%H:%M:%S}")
        parts.append(f"-> webhook '{effect.status.value}' (retry_count {call.retry_count})")
        print("  ".join(parts), file=self._out, flush=True)

    def done(self, ids: list[str]) -> bool:
        return all(i in self.latest and self.latest[i].status in FINAL_STATUSES for i in ids)


async def _demo(tmp: Path, seed: int, out: TextIO) -> int:
    script = {number: plan for _, number, plan, _ in DEMO_CALLS}
    async with Simulator(
        username="demo",
        secret=DEMO_SECRET,
        script=script,
        seed=seed,
        time_scale=0.25,
    ) as sim:
        settings = Settings.from_mapping(
            {
                "ami": {
                    "host": sim.host,
                    "port": sim.port,
                    "username": "demo",
                    "secret": DEMO_SECRET,
                },
                "database": {"path": str(tmp / "demo.db")},
                "api": {"token": "demo-token"},
                "agi": {"fastagi": False},  # the demo needs no dialplan hooks
                "dialer": {"channel": "PJSIP/{number}@carrier", "ring_timeout_s": 4},
                "targets": {"sales-ivr": {"context": "autoretry-connect", "extension": "s"}},
            },
            {},
        )
        labels = {f"demo-{i}": label for i, (label, *_) in enumerate(DEMO_CALLS)}
        print(f"AMI simulator on {sim.host}:{sim.port}; database {tmp / 'demo.db'}", file=out)
        now = datetime.now(UTC)
        with Store.open(settings.database.path) as store:
            for i, (label, number, _, retries) in enumerate(DEMO_CALLS):
                request = CallRequest.model_validate(
                    {
                        "agent_id": "sales-ivr",
                        "recipient_phone_number": number,
                        "retry_config": {
                            "enabled": True,
                            "max_retries": retries,
                            "retry_intervals_minutes": [DEMO_INTERVAL_MIN],
                        },
                    }
                )
                call, effects = new_call(f"demo-{i}", request, now)
                store.create_call(call, effects)
                print(f"placed {number}: {label}", file=out)
        timeline = Timeline(out)
        stop = asyncio.Event()
        runner = asyncio.create_task(
            # No API either: nothing to serve, and no port taken from the host.
            daemon.run(settings, shutdown_trigger=stop.wait, on_change=timeline, api=False)
        )
        try:
            await asyncio.wait_for(_until_done(timeline, list(labels)), timeout=90)
        except TimeoutError:
            print("demo: calls did not finish within 90 s", file=out)
            return 1
        finally:
            stop.set()
            await runner
    print("\nfinal:", file=out)
    for call_id, label in labels.items():
        call = timeline.latest[call_id]
        print(
            f"  {call.to_number}  {call.status.value:10} retries {call.retry_count}  ({label})",
            file=out,
        )
    return 0


async def _until_done(timeline: Timeline, ids: list[str]) -> None:
    while not timeline.done(ids):
        timeline.changed.clear()
        await timeline.changed.wait()
