"""The tracker against every recorded Asterisk session.

How the transcripts are registered (a careful reading of their headers): they were
recorded with variables ``RETRY_CALL_ID=abc123`` / ``RETRY_ATTEMPT=1`` (call files: only
``RETRY_CALL_ID=cf-...``), Originate ActionIDs ``orig-<name>``, no ChannelId, and AMD
published as ``UserEvent(LabAMD, AMDSTATUS: ..., AMDCAUSE: ..., RETRY_CALL_ID: ...)``. So
the tracker runs with ``variable_prefix="RETRY_"`` and ``amd_event="LabAMD"``, and each
attempt is registered with the transcript's ActionID and call id, in two ways:

- ``channel_id``: as if we had sent ``ChannelId``: Asterisk then gives the originated
  channel that Uniqueid, so we register the first channel's recorded Uniqueid
  (notech / sip-unregistered create no channel: an id that never appears);
- ``variables``: no ChannelId, correlated by our variables only (how call files work).

The synchronous originate (``local-busy-sync``) has no OriginateResponse (README point 7),
so it is registered like a call file (``action_id=None``); its ``Originate failed`` reply is
not a refusal (the channels come after it), and we never send synchronous originates.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from panoramisk import Manager

from ami_listener.ami_protocol import (
    EventSelection,
    event_name,
    parse_frame,
    protocol_factory,
    split_frames,
)
from ami_listener.ami_tracker import Answered, AttemptTracker, Finished, Ringing, Update
from ami_listener.core.outcomes import AttemptFacts, classify

from .ami_transcripts import Transcript, load, names, replay_server

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
PREFIX, AMD_EVENT = "RETRY_", "LabAMD"
SELECTION = EventSelection.default(PREFIX, AMD_EVENT)


class Row(NamedTuple):
    answered: bool
    cause: int | None  # Hangup Cause of the far-end leg
    tech_cause: int | None  # chan_sip in these recordings sends no TechCause header
    dial_status: str | None
    originate_reason: int | None
    trunk: str | None
    amd: str | None
    status: str  # outcomes.classify


# One row per transcript with an originate or a call file; the comment names the far-end
# leg whose cause is used. ;1/;2 are the Local halves; "SIP" the sipp channel.
EXPECTED: dict[str, Row] = {
    # Local channels only: the dialplan on ;2 plays the far end; ;1 often ends with 0
    "local-busy": Row(False, 17, None, "BUSY", 5, None, None, "busy"),  # ;2 17, ;1 0
    "local-busy-sync": Row(False, 17, None, "BUSY", None, None, None, "busy"),  # ;2 17
    "local-congestion": Row(False, 34, None, "CONGESTION", 8, None, None, "failed"),  # ;2
    "local-noanswer": Row(False, 19, None, None, 3, None, None, "no-answer"),  # ;2, no DialEnd
    "local-ringbusy": Row(False, 17, None, "BUSY", 5, None, None, "busy"),  # ;2 17, ;1 0
    "local-unavailable": Row(False, 20, None, "CHANUNAVAIL", 0, None, None, "failed"),  # ;2
    "local-rejected": Row(False, 21, None, "NOANSWER", 0, None, None, "failed"),  # ;2
    "local-chanunavail": Row(False, 20, None, "CHANUNAVAIL", 0, None, None, "failed"),  # ;2
    "local-nosuch": Row(False, 0, None, None, 0, None, None, "failed"),  # ;2 0, no extension
    "local-answer": Row(True, 16, None, "ANSWER", 4, None, None, "completed"),  # ;2
    "local-answer-app": Row(True, 0, None, "ANSWER", 4, None, None, "completed"),  # ;2 0 (p. 9)
    # SIP directly: the originated channel is the far end
    "sip-busy": Row(False, 17, None, "BUSY", 5, "sipp", None, "busy"),
    "sip-notfound": Row(False, 1, None, "NOANSWER", 0, "sipp", None, "failed"),  # 404
    "sip-ring": Row(False, 19, None, None, 3, "sipp", None, "no-answer"),  # timeout, no DialEnd
    "sip-ring-amihangup": Row(False, 16, None, "NOANSWER", 0, "sipp", None, "no-answer"),
    "sip-answer": Row(True, 16, None, "ANSWER", 4, "sipp", None, "completed"),
    "sip-unregistered": Row(False, None, None, None, 0, None, None, "failed"),  # no channel
    "notech": Row(False, None, None, None, 0, None, None, "failed"),  # no channel
    # Local -> Dial(SIP): the Dial leg is the far end; ;1 and ;2 say 0 or copy it
    "siplocal-busy": Row(False, 17, None, "BUSY", 5, "sipp", None, "busy"),  # SIP 486
    "siplocal-ring": Row(False, 16, None, "NOANSWER", 0, "sipp", None, "no-answer"),  # SIP
    "siplocal-answer": Row(True, 16, None, "ANSWER", 4, "sipp", None, "completed"),  # SIP BYE
    # call files: no OriginateResponse (README point 10); ;2 is the far end
    "callfile-answer": Row(True, 16, None, "ANSWER", None, None, None, "completed"),
    "callfile-future": Row(True, 16, None, "ANSWER", None, None, None, "completed"),
    "callfile-busy": Row(False, 17, None, "BUSY", None, None, None, "busy"),  # 1st of 2 tries
    # answered, then FastAGI / AMD
    "agi-local": Row(True, 16, None, "ANSWER", 4, None, None, "completed"),  # ;2
    "agi-sip": Row(True, 16, None, "ANSWER", 4, "sipp", None, "completed"),
    "amd-sip-greeting": Row(True, 16, None, "ANSWER", 4, "sipp", "HUMAN", "completed"),
    "amd-sip-machine": Row(True, 16, None, "ANSWER", 4, "sipp", "MACHINE", "completed"),
}
MODES = ("channel_id", "variables")


def test_the_table_covers_every_transcript_with_a_call() -> None:
    assert set(EXPECTED) == set(names()) - {"ami-basics"}


def row_of(facts: AttemptFacts) -> Row:
    return Row(
        facts.answered,
        facts.cause,
        facts.tech_cause,
        facts.dial_status,
        facts.originate_reason,
        facts.trunk,
        facts.amd_status,
        classify(facts).status.value,
    )


def events_of(transcript: Transcript) -> list[Mapping[str, str]]:
    """The events our protocol hands to the tracker, in recorded order."""
    raw = transcript.raw[transcript.raw.index(b"\r\n") + 2 :]
    frames, _ = split_frames(raw)
    return [
        parse_frame(f) for f in frames if (n := event_name(f)) is not None and SELECTION.wants(n, f)
    ]


def register(tracker: AttemptTracker, transcript: Transcript, mode: str) -> None:
    originate = transcript.originate
    if originate is None:  # a call file
        call_id = transcript.callfile_call_id
        assert call_id is not None
        tracker.expect(
            "A1", call_id=call_id, attempt_number=1, channel_id=None, action_id=None, at=T0
        )
        return
    first = next((m["Uniqueid"] for m in events_of(transcript) if m["Event"] == "Newchannel"), None)
    tracker.expect(
        "A1",
        call_id="abc123",
        attempt_number=1,
        channel_id=(first or "never-created") if mode == "channel_id" else None,
        action_id=str(originate["ActionID"]) if originate["Async"] == "true" else None,
        at=T0,
    )


def settle(tracker: AttemptTracker) -> list[Update]:
    """What the listener's periodic ``expire`` tick adds once the stream has ended."""
    return list(tracker.expire(T0 + timedelta(hours=1), timedelta(minutes=1)))


def only_finished(updates: list[Update]) -> Finished:
    finished = [u for u in updates if isinstance(u, Finished)]
    assert len(finished) == 1, updates
    return finished[0]


# ---- byte-for-byte replay over TCP into Manager + our protocol ---------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_replay_yields_the_expected_outcome(name: str, mode: str) -> None:
    transcript = load(name)
    if mode == "channel_id" and transcript.originate is None:
        mode = "variables"  # call files cannot carry a ChannelId
    tracker = AttemptTracker(variable_prefix=PREFIX, amd_event=AMD_EVENT)
    register(tracker, transcript, mode)
    updates: list[Update] = []
    clock = itertools.count()

    def on_event(msg: Mapping[str, str]) -> None:
        updates.extend(tracker.feed(msg, T0 + timedelta(milliseconds=next(clock))))

    async with replay_server(transcript, seed=len(name)) as port:
        manager = Manager(
            host="127.0.0.1",
            port=port,
            loop=asyncio.get_running_loop(),
            ping_delay=3600,
            protocol_factory=protocol_factory(on_event, SELECTION),
        )
        await asyncio.wait_for(manager.connect(), 5)
        futures = [manager.send_action(dict(a)) for a in transcript.actions]
        replies = await asyncio.wait_for(asyncio.gather(*futures), 10)
        manager.close()

    # forgotten once finished; only callfile-busy's second (unregistered) try is left
    assert tracker.channels_tracked == (2 if name == "callfile-busy" else 0)
    # without a ChannelId a failure with no channel of ours is only final after a while
    finished = only_finished(updates + settle(tracker))
    assert row_of(finished.facts) == EXPECTED[name]
    assert finished.uniqueid == next(
        (m["Uniqueid"] for m in events_of(transcript) if m["Event"] == "Newchannel"), None
    )
    kinds = [type(u) for u in updates]
    assert (Answered in kinds) == EXPECTED[name].answered
    if Ringing in kinds and Answered in kinds:
        assert kinds.index(Ringing) < kinds.index(Answered)
    assert tracker.live_uniqueids() == {}
    assert tracker.channels_tracked == 0  # and channels not ours expire
    originate = transcript.originate
    if originate is not None and originate["Async"] == "true":
        reply = replies[transcript.actions.index(originate)]
        # panoramisk still completes the Originate with its reply + OriginateResponse
        assert reply[0]["Response"] == "Success"
        assert reply[-1]["Event"] == "OriginateResponse"


# ---- any order that keeps each channel's own events in sequence ---------------------------


def mentioned(msg: Mapping[str, str]) -> set[str]:
    """The channels an event is about. The OriginateResponse is about none: README point 1
    saw it anywhere from before DialBegin to after the last Hangup."""
    if msg["Event"] == "OriginateResponse":
        return set()
    keys = ("Uniqueid", "DestUniqueid", "LocalOneUniqueid", "LocalTwoUniqueid")
    return {msg[k] for k in keys if k in msg}


def shuffled(events: list[Mapping[str, str]], rnd: random.Random) -> list[Mapping[str, str]]:
    """A random order that keeps, for every channel, the order of the events naming it
    (an event naming two channels, DialBegin or LocalBridge, is in both sequences).

    One more constraint: a call file's retry (a new call tree in callfile-busy) starts
    after the previous try ended, as Asterisk waits RetryTime (5 s) between them.
    """
    segments: list[list[int]] = [[]]
    seen_root = False
    for i, msg in enumerate(events):
        if msg["Event"] == "Newchannel" and msg["Uniqueid"] == msg["Linkedid"]:
            if seen_root:
                segments.append([])
            seen_root = True
        segments[-1].append(i)
    order: list[Mapping[str, str]] = []
    for segment in segments:
        preds: dict[int, set[int]] = {i: set() for i in segment}
        last: dict[str, int] = {}
        for i in segment:
            for uniqueid in mentioned(events[i]):
                if uniqueid in last:
                    preds[i].add(last[uniqueid])
                last[uniqueid] = i
        done: set[int] = set()
        while len(done) < len(segment):
            ready = [i for i in segment if i not in done and preds[i] <= done]
            pick = rnd.choice(ready)
            done.add(pick)
            order.append(events[pick])
    return order


CASES = [
    (n, m)
    for n in sorted(EXPECTED)
    for m in MODES
    if not (m == "channel_id" and n.startswith("callfile"))
]


@pytest.mark.parametrize(("name", "mode"), CASES)
@settings(max_examples=40, deadline=None)
@given(rnd=st.randoms(use_true_random=False))
def test_any_order_gives_the_same_facts(name: str, mode: str, rnd: random.Random) -> None:
    transcript = load(name)
    tracker = AttemptTracker(variable_prefix=PREFIX, amd_event=AMD_EVENT)
    register(tracker, transcript, mode)
    updates: list[Update] = []
    for i, msg in enumerate(shuffled(events_of(transcript), rnd)):
        updates.extend(tracker.feed(msg, T0 + timedelta(milliseconds=i)))
    assert row_of(only_finished(updates + settle(tracker)).facts) == EXPECTED[name]


# ---- the rest of the API -------------------------------------------------------------------


def feed_all(tracker: AttemptTracker, events: list[Mapping[str, str]]) -> list[Update]:
    out: list[Update] = []
    for i, msg in enumerate(events):
        out.extend(tracker.feed(msg, T0 + timedelta(milliseconds=i)))
    return out


def test_callfile_busy_second_try_is_a_second_attempt_when_registered() -> None:
    """Asterisk retried the file itself (MaxRetries: 1); we write MaxRetries: 0 and retry
    ourselves, so a try is ours only once registered. Registered, both tries are busy."""
    tracker = AttemptTracker(variable_prefix=PREFIX)
    tracker.expect(
        "A1", call_id="cf-busy", attempt_number=1, channel_id=None, action_id=None, at=T0
    )
    finished: list[Finished] = []
    for i, msg in enumerate(events_of(load("callfile-busy"))):
        for update in tracker.feed(msg, T0 + timedelta(seconds=i)):
            if isinstance(update, Finished):
                finished.append(update)
                if update.attempt_id == "A1":
                    tracker.expect(
                        "A2",
                        call_id="cf-busy",
                        attempt_number=2,
                        channel_id=None,
                        action_id=None,
                        at=update.at,
                    )
    assert [(f.attempt_id, f.facts.cause, f.facts.dial_status) for f in finished] == [
        ("A1", 17, "BUSY"),
        ("A2", 17, "BUSY"),
    ]
    assert finished[0].uniqueid != finished[1].uniqueid
    assert tracker.channels_tracked == 0


def rename(raw: bytes, pairs: dict[bytes, bytes]) -> Transcript:
    for old, new in pairs.items():
        raw = raw.replace(old, new)
    return Transcript("renamed", raw, ())


def test_default_names_attempt_id_variable_and_amd_user_event() -> None:
    """Our own names: ``__AUTORETRY_ATTEMPT_ID`` in VarSet and ``UserEvent(AutoretryAMD)``
    with an ``AUTORETRY_ATTEMPT_ID`` header; no ChannelId, no ActionID, unknown call id."""
    raw = load("amd-sip-machine").raw
    transcript = rename(
        raw,
        {
            b"Variable: RETRY_ATTEMPT\r\nValue: 1": (
                b"Variable: __AUTORETRY_ATTEMPT_ID\r\nValue: att-7"
            ),
            b"UserEvent: LabAMD": b"UserEvent: AutoretryAMD",
            b"RETRY_CALL_ID: abc123\r\n\r\n": b"AUTORETRY_ATTEMPT_ID: att-7\r\n\r\n",
        },
    )
    selection = EventSelection.default()
    frames, _ = split_frames(transcript.raw[transcript.raw.index(b"\r\n") + 2 :])
    events = [parse_frame(f) for f in frames if (n := event_name(f)) and selection.wants(n, f)]
    tracker = AttemptTracker()
    tracker.expect(
        "att-7", call_id="other", attempt_number=1, channel_id=None, action_id=None, at=T0
    )
    facts = only_finished(feed_all(tracker, events)).facts
    assert (facts.answered, facts.amd_status, facts.amd_cause) == (
        True,
        "MACHINE",
        "LONGGREETING-1500-1500",
    )
    assert classify(facts).machine


def test_attempt_number_mismatch_is_not_ours() -> None:
    tracker = AttemptTracker(variable_prefix=PREFIX)
    tracker.expect("A2", call_id="abc123", attempt_number=2, channel_id=None, action_id=None, at=T0)
    updates = feed_all(tracker, events_of(load("sip-busy")))  # carries RETRY_ATTEMPT=1
    assert updates == []
    assert tracker.live_uniqueids() == {"A2": frozenset()}


def test_refused_expire_live_and_forget() -> None:
    tracker = AttemptTracker()
    tracker.expect("A1", call_id="c1", attempt_number=1, channel_id="A1", action_id="A1", at=T0)
    tracker.expect("A2", call_id="c2", attempt_number=1, channel_id="A2", action_id="A2", at=T0)
    tracker.expect("A3", call_id="c3", attempt_number=1, channel_id="A3", action_id="A3", at=T0)
    refused = tracker.refused("A1", "Permission denied", T0)
    assert (refused.facts, refused.detail) == (AttemptFacts(), "Permission denied")

    newchannel: dict[str, Any] = {
        "Event": "Newchannel",
        "Channel": "PJSIP/trunk-00000001",
        "Uniqueid": "A2",
        "Linkedid": "A2",
        "ChannelState": "0",
    }
    ringing = dict(newchannel, Event="Newstate", ChannelState="5", ChannelStateDesc="Ringing")
    assert tracker.feed(newchannel, T0) == []
    assert tracker.feed(ringing, T0) == [Ringing("A2", T0)]
    assert tracker.live_uniqueids() == {"A2": frozenset({"A2"}), "A3": frozenset()}

    failed = {
        "Event": "OriginateResponse",
        "ActionID": "A4",
        "Response": "Failure",
        "Channel": "PJSIP/nobody",
        "Reason": "0",
        "Uniqueid": "<unknown>",
    }
    tracker.expect("A4", call_id="c4", attempt_number=1, channel_id="A4", action_id="A4", at=T0)
    assert tracker.feed(failed, T0) == []  # its channel's events could still be on the way
    assert tracker.expire(T0 + timedelta(seconds=1), timedelta(minutes=1)) == []
    [notech] = tracker.expire(T0 + timedelta(seconds=3), timedelta(minutes=1))
    assert (notech.attempt_id, notech.facts.originate_reason, notech.uniqueid) == ("A4", 0, None)

    later = T0 + timedelta(minutes=5)
    assert tracker.expire(later, timedelta(minutes=1)) == [
        Finished("A3", later, AttemptFacts(), None, detail="no AMI event")
    ]
    tracker.forget("A2")
    assert tracker.live_uniqueids() == {}
    assert tracker.channels_tracked == 0


def test_channels_not_ours_are_bounded_and_expire() -> None:
    tracker = AttemptTracker()
    for i in range(30_000):
        tracker.feed(
            {
                "Event": "Newchannel",
                "Channel": f"SIP/x-{i}",
                "Uniqueid": f"9.{i}",
                "Linkedid": f"9.{i}",
            },
            T0,
        )
    assert tracker.channels_tracked == 20_000
    assert tracker.expire(T0 + timedelta(hours=1), timedelta(minutes=10)) == []
    assert tracker.channels_tracked == 0


def test_a_local_half_waits_for_its_other_half() -> None:
    """Without LocalBridge (local-nosuch has none) the name says a ``;2`` exists."""
    tracker = AttemptTracker()
    tracker.expect("A1", call_id="c1", attempt_number=1, channel_id="A1", action_id="A1", at=T0)
    one = {"Channel": "Local/x@ctx-0000002a;1", "Uniqueid": "A1", "Linkedid": "A1"}
    two = {"Channel": "Local/x@ctx-0000002a;2", "Uniqueid": "7.2"}  # no Linkedid: name only
    failed = {"Event": "OriginateResponse", "ActionID": "A1", "Response": "Failure", "Reason": "5"}
    assert tracker.feed({"Event": "Newchannel", **one}, T0) == []
    assert tracker.feed({"Event": "Hangup", **one, "Cause": "0"}, T0) == []
    assert tracker.feed(failed, T0) == []
    assert tracker.feed({"Event": "Newchannel", **two}, T0) == []
    [finished] = tracker.feed({"Event": "Hangup", **two, "Cause": "17"}, T0)
    assert isinstance(finished, Finished)
    assert (finished.facts.cause, finished.facts.originate_reason) == (17, 5)
