"""Turn what Asterisk tells us into call state changes, and dial what the scheduler claims.

Every update from the tracker becomes a ``lifecycle`` event applied by ``Store.transition``
in the writer thread, one at a time in arrival order (a single consumer queue), so an
attempt's Ringing is never committed after its end. Dials go out only for attempts already
committed as ``dialing``; a refusal or a dial that hears nothing becomes an ``error``
outcome, and the policy decides. How a dial is built and sent is in ``engine_dial``, what a
commit sets off (wakes, status log, metrics, the hook) in ``engine_changes``, and the manage
hook's hand-overs are committed by ``engine_manage``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from . import ami_tracker as tracked
from .agi_handlers import MANAGE_EVENT
from .ami import AmiClient
from .config import Settings
from .core import lifecycle
from .core.lifecycle import Effect
from .core.models import Attempt, Call, OutcomeStatus
from .core.outcomes import AttemptFacts, Outcome, classify
from .engine_changes import ChangeFanout, ChangeHook
from .engine_dial import callfile_pending, dial_request, send_dial
from .engine_manage import ManageRequest, take_over
from .errors import AmiError, IllegalTransition, NotFound
from .metrics import Metrics
from .spool import SpoolError
from .store import Store
from .writer import Writer

log = logging.getLogger(__name__)

NO_EVENT_GRACE_S = 30.0  # after the ring timeout, an attempt with no AMI event is lost


def lost_outcome(why: str) -> Outcome:
    return Outcome(OutcomeStatus.ERROR, False, why)


Work = tracked.Update | ManageRequest


class Engine:
    def __init__(
        self,
        settings: Settings,
        writer: Writer,
        ami: AmiClient | None,
        *,
        clock: Callable[[], datetime],
        wake_scheduler: Callable[[], None],
        rng: Callable[[], float] | None = None,
        on_change: ChangeHook | None = None,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        wake_outbox: Callable[[], None] = lambda: None,
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._writer = writer
        self.ami = ami
        self._clock = clock
        self._wake = wake_scheduler
        self._rules = settings.rules(rng=rng)
        self._overrides = settings.cause_overrides()
        self._new_id = new_id
        self._fanout = ChangeFanout(
            wake_scheduler=wake_scheduler,
            wake_outbox=wake_outbox,
            on_change=on_change,
            metrics=metrics,
        )
        self.tracker = tracked.AttemptTracker()
        self._updates: asyncio.Queue[Work] = asyncio.Queue()
        self._calls: dict[str, str] = {}  # live attempt id -> call id
        self._targets: dict[str, str] = {}  # call id -> target name, while live
        self._sending: set[str] = set()  # attempts whose dial is being sent right now
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._background: set[asyncio.Task[None]] = set()

    def reload(self, settings: Settings, rng: Callable[[], float] | None) -> None:
        """New targets, dialer template, rules and overrides apply to the next attempt;
        attempts in flight keep the facts they have and finish normally."""
        self._settings = settings
        self._rules = settings.rules(rng=rng)
        self._overrides = settings.cause_overrides()

    # ---- from the AMI protocol (sync callback) ---------------------------------------
    def on_ami_event(self, msg: Mapping[str, str]) -> None:
        if msg.get("UserEvent") == MANAGE_EVENT and msg.get("Event") == "UserEvent":
            self._updates.put_nowait(ManageRequest(dict(msg)))
            return
        for update in self.tracker.feed(msg, self._clock()):
            self._updates.put_nowait(update)

    async def run(self) -> None:
        """Apply updates one at a time, in arrival order."""
        while True:
            update = await self._updates.get()
            try:
                await self._apply(update)
            except Exception:
                log.exception("applying %r failed", update)
            finally:
                self._updates.task_done()

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Commit what Asterisk already told us before stopping (clean shutdown)."""
        try:
            await asyncio.wait_for(self._updates.join(), timeout_s)
        except TimeoutError:
            log.warning("stopping with %d AMI updates not committed", self._updates.qsize())

    async def _apply(self, update: Work) -> None:
        if isinstance(update, ManageRequest):
            await self._manage(update.msg)
            return
        call_id = self._calls.get(update.attempt_id)
        if call_id is None:
            return  # not ours any more (already finished or reconciled)
        event: lifecycle.Event
        if isinstance(update, tracked.Ringing):
            event = lifecycle.Ringing(update.at, update.attempt_id)
        elif isinstance(update, tracked.Answered):
            event = lifecycle.Answered(update.at, update.attempt_id, update.uniqueid)
        else:
            event = lifecycle.AttemptEnded(
                update.at, update.attempt_id, self._outcome(call_id, update), update.uniqueid
            )
            self._finished(update.attempt_id)
        await self.transition(call_id, event)

    async def _manage(self, msg: Mapping[str, str]) -> None:
        taken = await take_over(
            msg,
            settings=self._settings,
            rules=self._rules,
            now=self._clock(),
            new_id=self._new_id,
            writer=self._writer,
            metrics=self._metrics,
        )
        if taken is not None:
            self.changed(*taken)

    def _outcome(self, call_id: str, update: tracked.Finished) -> Outcome:
        if update.detail and update.facts == AttemptFacts():
            return lost_outcome(update.detail)
        facts = update.facts
        target = self._settings.targets.get(self._targets.get(call_id, ""))
        if target is not None and target.trunk and facts.trunk is None:
            facts = replace(facts, trunk=target.trunk)
        notsure_is_machine = target is not None and target.notsure == "machine"
        return classify(facts, self._overrides, notsure_is_machine=notsure_is_machine)

    def _finished(self, attempt_id: str) -> None:
        call_id = self._calls.pop(attempt_id, None)
        if call_id is not None:
            self._targets.pop(call_id, None)
        timer = self._timers.pop(attempt_id, None)
        if timer is not None:
            timer.cancel()
        self.tracker.forget(attempt_id)

    async def transition(self, call_id: str, event: lifecycle.Event) -> Call | None:
        """Commit ``event`` for ``call_id``; None if the call's state does not allow it."""
        rules = self._rules
        try:
            call, effects = await self._writer(
                lambda store: store.transition(
                    call_id, lambda c: lifecycle.advance(c, event, rules)
                )
            )
        except (IllegalTransition, NotFound) as exc:
            log.info("call %s: %s ignored: %s", call_id, type(event).__name__, exc)
            return None
        if isinstance(event, lifecycle.AttemptEnded):
            self._fanout.attempt_ended(call, event.attempt_id, effects)
        self.changed(call, effects)
        return call

    def changed(self, call: Call, effects: tuple[Effect, ...]) -> None:
        """A change of ``call`` is committed (by us or the scheduler): tell who needs to know."""
        self._fanout.changed(call, effects)

    # ---- dialling (the scheduler's dial callback) ------------------------------------
    async def dial(self, call: Call, attempt: Attempt) -> None:
        dialer = self._settings.dialer
        now = self._clock()
        self._calls[attempt.id] = call.id
        self._targets[call.id] = call.target
        try:
            request = dial_request(self._settings, call, attempt)
        except ValueError as exc:
            self._finish_now(attempt.id, f"cannot dial: {exc}", now)
            return
        by_file = dialer.method == "callfile"
        self.tracker.expect(
            attempt.id,
            call_id=call.id,
            attempt_number=attempt.number,
            channel_id=None if by_file else attempt.id,
            action_id=None if by_file else attempt.id,
            at=now,
        )
        self._arm_timer(attempt.id)
        self._sending.add(attempt.id)
        try:
            await send_dial(dialer, self.ami, request)
            log.info("call %s attempt %s: dialled %s", call.id, attempt.number, request.channel)
        except (AmiError, SpoolError) as exc:
            self._finish_now(attempt.id, f"dial refused: {exc}", self._clock())
        finally:
            self._sending.discard(attempt.id)

    def _finish_now(self, attempt_id: str, why: str, at: datetime) -> None:
        # The tracker's own "no channel, here is why" ending (it also forgets the attempt).
        self._updates.put_nowait(self.tracker.refused(attempt_id, why, at))

    def _arm_timer(self, attempt_id: str) -> None:
        """An attempt that hears nothing at all within ring time + grace is lost."""
        delay = self._settings.dialer.ring_timeout_s + NO_EVENT_GRACE_S
        loop = asyncio.get_running_loop()
        self._timers[attempt_id] = loop.call_later(delay, self._expire)

    def _expire(self) -> None:
        grace = timedelta(seconds=self._settings.dialer.ring_timeout_s + NO_EVENT_GRACE_S)
        for update in self.tracker.expire(self._clock(), grace - timedelta(seconds=1)):
            self._updates.put_nowait(update)

    # ---- reconciliation --------------------------------------------------------------
    def on_ready(self) -> None:
        """The AMI session is (again) logged in: reconcile, then let the scheduler dial."""

        async def reconcile_then_wake() -> None:
            await self.reconcile()
            self._wake()

        task = asyncio.get_running_loop().create_task(reconcile_then_wake())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def reconcile(self) -> None:
        """After (re)connecting: keep following attempts whose channels still exist; the
        rest are ``error`` / ``outcome-lost`` and the policy decides (invariant 7)."""
        if self.ami is None:
            return
        try:
            channels = await self.ami.channels()
        except AmiError as exc:
            log.warning("reconcile postponed: %s", exc)
            return
        alive = {c.get("Uniqueid") for c in channels} | {c.get("Linkedid") for c in channels}
        followed = self.tracker.live_uniqueids()
        now = self._clock()
        for call in await self._writer(Store.live_calls):
            attempt = call.live_attempt
            if attempt is None or attempt.id in self._sending:
                continue
            if attempt.id in followed:
                seen = followed[attempt.id]
                if not seen or seen & alive or attempt.id in alive:
                    continue  # nothing heard yet (timer covers it) or still up
            elif attempt.id in alive or callfile_pending(self._settings.dialer, attempt.id):
                self._calls[attempt.id] = call.id
                self._targets[call.id] = call.target
                self.tracker.expect(
                    attempt.id,
                    call_id=call.id,
                    attempt_number=attempt.number,
                    channel_id=attempt.id,
                    action_id=None,
                    at=now,
                )
                self._arm_timer(attempt.id)
                log.info("call %s attempt %s: still up, following", call.id, attempt.number)
                continue
            self._calls[attempt.id] = call.id
            self._finish_now(attempt.id, "outcome-lost", now)
