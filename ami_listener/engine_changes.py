"""What a committed change of a call sets off: ``ChangeFanout``.

Every commit of a call's state ends here, the engine's (lifecycle events, manage hand-overs)
and the scheduler's (its dispatches, through ``Engine.changed``): a ``Notify`` wakes the
webhook sender (its event is committed) and logs the new status; a ``Schedule``, or a
``Notify`` that leaves the call with no live attempt, wakes the scheduler (a retry to plan,
or capacity freed); then the ``on_change`` hook sees the call. The engine's ended attempts
are counted here too (``attempt_ended``). Separate from ``engine`` because it holds none of
the engine's state, only the callbacks it fans out to.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .core.lifecycle import Effect, Notify, Schedule
from .core.models import Call
from .metrics import Metrics

# The engine's logger: the status lines kept the name they had when this code was in ``engine``.
log = logging.getLogger("ami_listener.engine")

ChangeHook = Callable[[Call, tuple[Effect, ...]], None]


class ChangeFanout:
    """The callbacks a committed change goes to; ``on_change`` is last, after the wakes."""

    def __init__(
        self,
        *,
        wake_scheduler: Callable[[], None],
        wake_outbox: Callable[[], None],
        on_change: ChangeHook | None,
        metrics: Metrics | None,
    ) -> None:
        self._wake = wake_scheduler
        self._wake_outbox = wake_outbox
        self._on_change = on_change
        self._metrics = metrics

    def attempt_ended(self, call: Call, attempt_id: str, effects: tuple[Effect, ...]) -> None:
        """Count the attempt that just ended, and whether a retry was scheduled."""
        if self._metrics is not None:
            ended = next(a for a in call.attempts if a.id == attempt_id)
            retried = any(isinstance(e, Schedule) for e in effects)
            self._metrics.attempt_ended(ended, retried=retried)

    def changed(self, call: Call, effects: tuple[Effect, ...]) -> None:
        attempt = call.last_attempt
        if any(isinstance(effect, Notify) for effect in effects):
            self._wake_outbox()  # its event is committed: deliver it
        for effect in effects:
            if isinstance(effect, Notify):
                log.info(
                    "call %s attempt %s: %s%s",
                    call.id,
                    attempt.number if attempt else 0,
                    effect.status.value,
                    f" ({attempt.reason}; {attempt.decision})"
                    if attempt and attempt.decision and not attempt.live
                    else "",
                )
            if isinstance(effect, Schedule) or (
                isinstance(effect, Notify) and call.live_attempt is None
            ):
                self._wake()  # a retry to plan, or capacity freed
        if self._on_change is not None:
            self._on_change(call, effects)
