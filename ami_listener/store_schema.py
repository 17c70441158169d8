"""The store's schema: sqlite-utils ``Migrations``, shaped for few pages per commit.

An outcome commit (attempt ends, call changes status, one outbox event) is the hot write,
and in WAL mode its cost grows with the b-tree pages it dirties: each is one more WAL frame
written (and fsynced under ``synchronous=full``) and later checkpointed. So every index
below is one that a query needs, and the ones only some rows need are partial:

    outcome commit:  calls row (its attempts inside it), calls_live entry removed,
                     outbox row                                     = 3 pages (was 7-8)

(a retry adds the calls_due entry). A call's attempts are a compact JSON column of its
row, not rows of their own: an attempt is only ever read and written with its call, and
as a table it cost every outcome commit a statement and two pages (its row and its
``attempts_live`` entry). A new outbox event enters no index at all: see the outbox below
and ``store_outbox`` for how delivery finds it.

0001_initial was rewritten in place for this layout (the project has not been released;
no database in the field has the earlier one).
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

MIGRATIONS = Migrations("ami_listener")

# Written into partial indexes by 0001_initial and repeated verbatim by the queries that
# must use them: SQLite uses a partial index only when the query repeats its WHERE term.
# Literal, not derived from the enums, so the migration's text never changes; a test
# checks it still names PENDING_STATUSES.
PENDING_IN = "status IN ('queued', 'rescheduled', 'scheduled')"
# A call has an attempt on the wire exactly when live_at (that attempt's started_at, as
# the store writes it) is set; the term calls_live is written with.
LIVE = "live_at IS NOT NULL"


# The attempts view's columns: store_rows.ATTEMPT_FIELDS, the order of each attempt's array.
_ATTEMPT_COLUMNS = ", ".join(
    f"a.value ->> {i} AS {name}"
    for i, name in enumerate(
        (
            "id", "number", "status", "started_at", "ended_at", "answered_at", "cause",
            "cause_txt", "tech_cause", "dial_status", "originate_reason", "amd_status",
            "amd_cause", "answered_by_voice_mail", "permanent", "reason", "decision",
            "uniqueid",
        )
    )
)  # fmt: skip


@MIGRATIONS(name="0001_initial")
def _initial(db: Database) -> None:
    for sql in (
        """CREATE TABLE batches (id TEXT PRIMARY KEY, target TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'created', webhook_url TEXT,
            retry_config TEXT NOT NULL, created_at TEXT NOT NULL, scheduled_at TEXT) STRICT""",
        """CREATE TABLE calls (id TEXT PRIMARY KEY, target TEXT NOT NULL,
            to_number TEXT NOT NULL, from_number TEXT, status TEXT NOT NULL,
            retry_config TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
            scheduled_at TEXT, retry_count INTEGER NOT NULL, variables TEXT NOT NULL,
            batch_id TEXT REFERENCES batches(id), webhook_url TEXT,
            bypass_call_guardrails INTEGER NOT NULL, answered_by_voice_mail INTEGER NOT NULL,
            error_message TEXT, timezone TEXT, cancel_requested TEXT,
            idempotency_key TEXT, live_at TEXT, attempts TEXT NOT NULL) STRICT""",
        # attempts: the call's attempts, oldest first, each a JSON array of the Attempt
        # fields in order but call_id (store_rows.ATTEMPT_FIELDS); last, so scans that read
        # the small columns skip over it. live_at: the started_at of its first live
        # attempt, NULL when none is live; written only when it changes, so the index
        # below is touched by a dial and by the outcome that ends it, nothing else.
        f"CREATE INDEX calls_live ON calls(live_at) WHERE {LIVE}",
        # The attempts as rows, with the columns of the table they once were, for the
        # operator's SQL and the reads that walk every attempt (never the hot path).
        # `->>` gives SQL values: JSON true/false as 1/0.
        f"""CREATE VIEW attempts AS SELECT c.id AS call_id, {_ATTEMPT_COLUMNS}
            FROM calls c, json_each(c.attempts) a""",  # noqa: S608 -- constants only
        # Partial: most calls have no key, and an entry per NULL would be a page per insert.
        # `idempotency_key = ?` implies IS NOT NULL, so the lookup uses it.
        "CREATE UNIQUE INDEX calls_key ON calls(idempotency_key) WHERE idempotency_key IS NOT NULL",
        # The claim query reads only pending rows in scheduled_at order: a partial index on
        # (scheduled_at) WHERE status is pending is the (status, scheduled_at) index
        # without the rows no claim ever looks at.
        f"CREATE INDEX calls_due ON calls(scheduled_at) WHERE {PENDING_IN}",
        # No (status, ...) index: status changes on every transition, and an index on it
        # would add pages to every commit. Listing by status walks calls_created instead.
        "CREATE INDEX calls_created ON calls(created_at, id)",
        "CREATE INDEX calls_batch ON calls(batch_id, created_at) WHERE batch_id IS NOT NULL",
        # seq (the rowid) is commit order, hence each call's order of events. Without
        # AUTOINCREMENT a new seq is max(seq) + 1: still above every stored event (outbox
        # rows are never deleted), and one page (sqlite_sequence) fewer per commit. The
        # event id is derived from (seq, call_id), see store_outbox.event_id, so it needs
        # neither a column nor a UNIQUE index (a page per insert). The payload is the last
        # column: scans that read the small columns skip over it.
        #
        # state: 'new' (never tried: what a state change inserts), 'pending' (tried and
        # to be retried at next_at, or replayed), 'delivered', 'dead'. Readers see 'new'
        # as 'pending'. A new event is in no index: it is found by reading the table from
        # outbox_cursor.seq on, a rowid range that holds the events not yet tried plus
        # those settled after them; store_outbox advances it as events settle.
        """CREATE TABLE outbox (seq INTEGER PRIMARY KEY,
            call_id TEXT NOT NULL REFERENCES calls(id),
            status TEXT NOT NULL, created_at TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, next_at TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'new'
                CHECK (state IN ('new', 'pending', 'delivered', 'dead')),
            last_error TEXT, delivered_at TEXT, payload TEXT NOT NULL) STRICT""",
        # The events tried and waiting for a retry (few, unless a receiver is down): per
        # call, the lowest seq is its head and next_at is in the entry, so their heads
        # are read from this index alone (state is in it only so that SQLite 3.40 sees
        # the index as covering).
        "CREATE INDEX outbox_pending ON outbox(call_id, seq, next_at, state) "
        "WHERE state = 'pending'",
        # One row: every event below seq is tried (not 'new').
        """CREATE TABLE outbox_cursor (id INTEGER PRIMARY KEY CHECK (id = 0),
            seq INTEGER NOT NULL) STRICT""",
        "INSERT INTO outbox_cursor (id, seq) VALUES (0, 0)",
    ):
        db.execute(sql)


@MIGRATIONS(name="0002_outbox_acked")
def _outbox_acked(db: Database) -> None:
    # An event delivered at its first try, recorded without touching its outbox row: the
    # row carries the payload (about a page a few rows), so settling a batch of deliveries
    # by rewriting rows cost a page per ~3 events (WAL frames, fsync, checkpoint), while
    # these rows are ~30 bytes. Such an event's row keeps state 'new' and attempts 0;
    # readers see it as 'delivered' with one attempt more (store_outbox.SELECT). An event
    # tried before (pending, replayed) is settled in its row as before.
    db.execute(
        """CREATE TABLE outbox_acked (seq INTEGER PRIMARY KEY REFERENCES outbox(seq),
            delivered_at TEXT NOT NULL) STRICT"""
    )
