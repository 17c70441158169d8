"""What the simulator dials: the CallSpec for a dial string or a call file, the behaviour
the script gives each attempt, and a record of every call placed.

Kept apart from ``simulator.py``, which runs the server, the sessions and the call tasks,
because none of this touches sockets or tasks: it is data and arithmetic, and the records
are what tests read afterwards (``Simulator.originates``, ``max_concurrent``) to prove a
number was never rung twice at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from ami_listener import sim_actions
from ami_listener.sim_calls import CallSpec
from ami_listener.sim_scenarios import FAR_ENDS, Behaviour, Target, default_behaviour, parse_target
from ami_listener.sim_spool import CallFile


@dataclass
class DialRecord:
    """One call placed (or refused) by the simulator: for "never dialled twice at once"."""

    number: str
    channel: str
    behaviour: Behaviour | None
    source: str
    """``originate`` or ``callfile``."""
    started_at: datetime
    ended_at: datetime | None = None


def scripted_behaviour(
    script: Mapping[str, list[Behaviour]], attempts: Counter[str], number: str
) -> Behaviour:
    """Count one more attempt at ``number`` and say what its far end does this time.

    ``script[number]`` (with or without the ``+``) gives one behaviour per attempt, the last
    one repeating; a number not in the script follows the default table in ``sim_scenarios``.
    """
    attempts[number] += 1
    plan = script.get(number) or script.get(number.lstrip("+"))
    if plan:
        return plan[min(attempts[number], len(plan)) - 1]
    return default_behaviour(number)


def max_concurrent(records: Iterable[DialRecord], number: str) -> int:
    """Most calls to ``number`` that were up at the same time."""
    edges: list[tuple[datetime, int]] = []
    for record in records:
        if record.number == number and record.behaviour is not None:
            edges.append((record.started_at, 1))
            edges.append((record.ended_at or datetime.max.replace(tzinfo=UTC), -1))
    level = peak = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        level += step
        peak = max(peak, level)
    return peak


def spec_for(channel: str, *, ring_s: float, answer_hold_s: float, amd_s: float) -> CallSpec:
    """A CallSpec with timing knobs filled; an unknown technology gets tech ""."""
    target = parse_target(channel) or Target("", "", "", channel)
    return CallSpec(
        target=target,
        far=FAR_ENDS[Behaviour.ANSWER],
        origin_dial=channel,
        ring_s=ring_s,
        answer_hold_s=answer_hold_s,
        amd_s=amd_s,
    )


def call_file_spec(spec: CallSpec, call_file: CallFile, attempt: int) -> CallSpec:
    """Fill ``spec`` (from ``spec_for(call_file.channel)``) from the call file, as pbx_spool
    does for attempt ``attempt`` (1-based): destination, caller ID, wait time, variables."""
    spec.context, spec.exten, spec.priority = (
        call_file.context,
        call_file.extension,
        call_file.priority,
    )
    spec.application, spec.data = call_file.application, call_file.data
    spec.cid_num, spec.cid_name = sim_actions.parse_callerid(call_file.callerid)
    spec.timeout_s = call_file.wait_time_s
    spec.variables = [*call_file.variables, ("AST_OUTGOING_ATTEMPT", str(attempt))]
    spec.result = "none"
    return spec
