"""The attempts the tracker follows and how a channel is tied to one: ``AttemptTable``.

Separate from ``ami_tracker``, which reads events into facts and facts into updates,
because "whose channel is this?" is a question of its own, with its own indexes (by
ActionID, call id, and claimed Linkedid). The ties, strongest first, are listed in
``ami_tracker``'s docstring; tying a root channel claims its Linkedid, which brings in
every leg already seen (``ChannelTable.orphans_of``). Forgetting an attempt forgets its
channels too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from .ami_channels import Channel, ChannelTable, as_int
from .core.outcomes import AttemptFacts


@dataclass(slots=True)
class TrackedAttempt:
    """What the tracker knows of one attempt so far (flags once set stay set)."""

    attempt_id: str
    call_id: str
    number: int
    channel_id: str | None
    action_id: str | None
    expected_at: datetime
    channels: set[str] = field(default_factory=set)
    linkedids: set[str] = field(default_factory=set)
    root: str | None = None
    responded_at: datetime | None = None
    originate_ok: bool = False
    originate_reason: int | None = None
    amd_status: str | None = None
    amd_cause: str | None = None
    ringing_sent: bool = False
    answered_sent: bool = False
    report: AttemptFacts | None = None  # from our dialplan's report hook (no channel events)


class AttemptTable:
    """The attempts followed, by id, with the indexes that tie channels to them."""

    def __init__(
        self, chans: ChannelTable, *, var_attempt_id: str, var_call_id: str, var_attempt: str
    ) -> None:
        self._chans = chans
        self._var_attempt_id = var_attempt_id
        self._var_call_id = var_call_id
        self._var_attempt = var_attempt
        self._attempts: dict[str, TrackedAttempt] = {}
        self._by_action: dict[str, str] = {}
        self._by_call: dict[str, str] = {}
        self._by_linkedid: dict[str, str] = {}

    def __iter__(self) -> Iterator[TrackedAttempt]:
        return iter(self._attempts.values())

    def get(self, attempt_id: str) -> TrackedAttempt | None:
        return self._attempts.get(attempt_id)

    def by_action(self, action_id: str) -> TrackedAttempt | None:
        """The attempt whose Originate carried that ActionID."""
        attempt_id = self._by_action.get(action_id)
        return self._attempts.get(attempt_id) if attempt_id else None

    def add(self, attempt: TrackedAttempt) -> None:
        self._attempts[attempt.attempt_id] = attempt
        self._by_call[attempt.call_id] = attempt.attempt_id
        if attempt.action_id is not None:
            self._by_action[attempt.action_id] = attempt.attempt_id
        if attempt.channel_id is not None:
            # ChannelId becomes the root's Uniqueid, hence every leg's Linkedid
            self._claim_linkedid(attempt, attempt.channel_id)

    def forget(self, attempt_id: str) -> None:
        """Drop the attempt, its index entries and its channels."""
        attempt = self._attempts.pop(attempt_id, None)
        if attempt is None:
            return
        if attempt.action_id is not None:
            self._by_action.pop(attempt.action_id, None)
        if self._by_call.get(attempt.call_id) == attempt_id:
            del self._by_call[attempt.call_id]
        for linkedid in attempt.linkedids:
            self._by_linkedid.pop(linkedid, None)
        for uniqueid in attempt.channels:
            self._chans.drop(uniqueid)

    def attribute(self, chan: Channel, touched: set[str]) -> None:
        """Tie ``chan`` to its attempt if we can tell whose it is (it may stay an orphan)."""
        if chan.attempt_id is not None:
            touched.add(chan.attempt_id)
            return
        attempt_id = self._by_linkedid.get(chan.uniqueid)
        if attempt_id is None and chan.linkedid is not None:
            attempt_id = self._by_linkedid.get(chan.linkedid)
        if attempt_id is None:
            attempt_id = self._by_variables(chan)
        if attempt_id is None:
            attempt_id = next(
                (
                    self._chans[u].attempt_id
                    for u in chan.links
                    if self._chans[u].attempt_id is not None
                ),
                None,
            )
        if attempt_id is not None:
            self.attach(chan, self._attempts[attempt_id], touched)

    def _by_variables(self, chan: Channel) -> str | None:
        attempt_id = chan.variables.get(self._var_attempt_id)
        if attempt_id is not None:
            return attempt_id if attempt_id in self._attempts else None
        call_id = chan.variables.get(self._var_call_id)
        attempt_id = self._by_call.get(call_id) if call_id is not None else None
        if attempt_id is None:
            return None
        number = as_int(chan.variables.get(self._var_attempt))
        return attempt_id if number in (None, self._attempts[attempt_id].number) else None

    def attach(self, chan: Channel, attempt: TrackedAttempt, touched: set[str]) -> None:
        """Tie ``chan`` to ``attempt``, and with it every channel linked to it."""
        work = [chan]
        while work:
            chan = work.pop()
            if chan.attempt_id is not None:
                continue
            chan.attempt_id = attempt.attempt_id
            attempt.channels.add(chan.uniqueid)
            touched.add(attempt.attempt_id)
            self._chans.adopted(chan)
            if chan.amd is not None:
                attempt.amd_status, attempt.amd_cause = chan.amd
            if chan.uniqueid == attempt.channel_id:
                attempt.root = chan.uniqueid
            if chan.linkedid == chan.uniqueid:  # a root channel: its Linkedid is ours
                attempt.root = attempt.root or chan.uniqueid
                work.extend(self._claim_linkedid(attempt, chan.uniqueid))
            work.extend(self._chans[u] for u in chan.links)

    def _claim_linkedid(self, attempt: TrackedAttempt, linkedid: str) -> Iterable[Channel]:
        attempt.linkedids.add(linkedid)
        self._by_linkedid[linkedid] = attempt.attempt_id
        return self._chans.orphans_of(linkedid)
