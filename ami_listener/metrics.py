"""Prometheus metrics: what the daemon counts, served as text at ``GET /metrics``.

One ``Metrics`` object owns its own ``CollectorRegistry`` (not prometheus-client's global
default): ``daemon.run`` makes it and hands it to the components that count (engine,
scheduler, webhook sender, AMI client) and to the API that serves it, so two daemons in
one process (the tests) never share counters, and nothing is a module global.

Counters and the dial-lag histogram are updated as things happen, in the event loop.
The gauges read from the database (outbox depth, live and pending calls) are set at
scrape time by the API through the writer thread (``refresh``): one cheap query each,
all on partial indexes, so there is no second bookkeeping to drift from the truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from .core.models import Attempt

# What generate_latest writes: the classic text format, which every Prometheus reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds from a call's due time to its dial. Milliseconds when all is well; seconds when
# max_cps paces a burst; minutes to hours when max_concurrent or a lost AMI holds calls.
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

WEBHOOK_RESULTS = ("delivered", "failed", "dead")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass(frozen=True, slots=True)
class StoreGauges:
    """The gauges read from the database at scrape time (``store_status.gauges``)."""

    outbox_depth: int
    calls_live: int
    calls_pending: int


def cause_label(cause: int | None) -> str:
    """The ``cause`` label: the Q.850 number, or ``none`` (no cause was heard)."""
    return "none" if cause is None else str(cause)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.attempts = Counter(
            "autoretry_attempts",
            "Attempts ended, by attempt status and Q.850 cause ('none' if none was heard).",
            ["status", "cause"],
            registry=r,
        )
        self.retries_scheduled = Counter(
            "autoretry_retries_scheduled",
            "Retries the policy scheduled after an attempt ended.",
            registry=r,
        )
        self.dial_lag = Histogram(
            "autoretry_dial_lag_seconds",
            "From a call's due time to the start of its dial.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.ami_connected = Gauge(
            "autoretry_ami_connected", "1 while logged in to the AMI, else 0.", registry=r
        )
        self.ami_reconnects = Counter(
            "autoretry_ami_reconnects",
            "AMI connection attempts after the first (each try while Asterisk is away counts).",
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "autoretry_webhook_deliveries",
            "Webhook delivery attempts by result: delivered (2xx), failed (retried later), "
            "dead (given up).",
            ["result"],
            registry=r,
        )
        self.outbox_depth = Gauge(
            "autoretry_outbox_depth",
            "Webhook events not yet delivered (dead excluded).",
            registry=r,
        )
        self.calls_live = Gauge(
            "autoretry_calls_live", "Calls with an attempt on the wire.", registry=r
        )
        self.calls_pending = Gauge(
            "autoretry_calls_pending",
            "Calls waiting for a dial (first dials and retries, due or not).",
            registry=r,
        )
        for result in WEBHOOK_RESULTS:  # present at 0 from the start, not absent
            self.webhook_deliveries.labels(result)

    # ---- updates, from the components --------------------------------------------------
    def attempt_ended(self, attempt: Attempt, *, retried: bool) -> None:
        self.attempts.labels(attempt.status.value, cause_label(attempt.cause)).inc()
        if retried:
            self.retries_scheduled.inc()

    def dialled(self, due_at: datetime, started_at: datetime) -> None:
        self.dial_lag.observe(max(0.0, (started_at - due_at).total_seconds()))

    def ami_state(self, connected: bool) -> None:
        self.ami_connected.set(1 if connected else 0)

    def webhook_settled(self, state: str, attempted: bool, count: int = 1) -> None:
        """``count`` delivery results (``Settlement.state``); nothing sent (no URL) is not
        counted. The sender reports a trip's results by kind: a labelled counter's
        ``inc`` takes a lock and a lookup, which per event cost more than the rest of
        its bookkeeping."""
        if not attempted:
            return
        result = "failed" if state == "pending" else state
        if result in WEBHOOK_RESULTS:
            self.webhook_deliveries.labels(result).inc(count)

    def refresh(self, gauges: StoreGauges) -> None:
        self.outbox_depth.set(gauges.outbox_depth)
        self.calls_live.set(gauges.calls_live)
        self.calls_pending.set(gauges.calls_pending)

    # ---- exposition -------------------------------------------------------------------
    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def parse(text: str) -> Samples:
    """``{(sample name, sorted labels): value}`` from exposition text, through
    prometheus-client's own parser (``autoretry status`` reads the daemon's this way)."""
    values: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return values
