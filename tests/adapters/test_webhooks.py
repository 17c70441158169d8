"""Webhook delivery against a real aiohttp receiver on 127.0.0.1, outbox in a real SQLite file.

The sender's clock is a ``Clock`` the test moves, so backoff is checked without sleeping;
every wait is on an event (a request arrived, a result was committed) with a timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ami_listener.config_sections import WebhooksSettings
from ami_listener.core.lifecycle import Dispatch, Ringing, advance, new_call
from ami_listener.core.models import CallRequest
from ami_listener.store import Store
from ami_listener.store_outbox import Settlement
from ami_listener.webhooks import NO_URL, WebhookSender, check_url, sign, verify
from ami_listener.webhooks_sign import Signer
from ami_listener.writer import Writer

from .webhook_receiver import T0, Clock, Received, Receiver, scripted

SECRET = "whsec-test-9f8e7d"


def settings(**kw: Any) -> WebhooksSettings:
    raw: dict[str, Any] = {"secret": SECRET, "timeout_s": 5, "concurrency": 4, **kw}
    return WebhooksSettings.model_validate(raw)


def place(db: Path, call_id: str, url: str | None, *, events: int = 1) -> None:
    """Store a call through the real store: 1 to 3 outbox events (queued, initiated, ringing)."""
    body: dict[str, Any] = {"agent_id": "sales-ivr", "recipient_phone_number": "+14155550100"}
    if url is not None:
        body["webhook_url"] = url
    with Store.open(db) as store:
        store.create_call(*new_call(call_id, CallRequest.model_validate(body), T0))
        att = f"{call_id}-a1"
        if events >= 2:
            store.transition(call_id, lambda c: advance(c, Dispatch(at=T0, attempt_id=att)))
        if events >= 3:
            store.transition(call_id, lambda c: advance(c, Ringing(at=T0, attempt_id=att)))


def outbox(db: Path) -> list[Any]:
    with Store.open(db) as store:
        return store.outbox_list(limit=1000)


class Results:
    """Collects what the sender committed (its ``on_settled`` hook)."""

    def __init__(self) -> None:
        self.items: list[Settlement] = []
        self._changed = asyncio.Event()

    def __call__(self, result: Settlement) -> None:
        self.items.append(result)
        self._changed.set()

    async def until(self, count: int, limit_s: float = 10) -> Settlement:
        async def wait() -> None:
            while len(self.items) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), limit_s)
        return self.items[count - 1]


@asynccontextmanager
async def sending(
    db: Path,
    config: WebhooksSettings,
    clock: Callable[..., Any],
    *,
    rng: Callable[[], float] = lambda: 0.5,
) -> AsyncIterator[tuple[WebhookSender, Results]]:
    results = Results()
    async with Writer(db) as writer:
        sender = WebhookSender(writer, config, clock=clock, rng=rng, on_settled=results)
        task = asyncio.create_task(sender.run())
        try:
            yield sender, results
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# ---- signing ----------------------------------------------------------------------------
def test_sign_verify_round_trip_and_refusals() -> None:
    secret, body = b"k1", b'{"id":"c1","status":"queued"}'
    header = sign(secret, body, 1_769_421_600)
    assert header.startswith("t=1769421600,v1=") and len(header) == len("t=1769421600,v1=") + 64
    assert verify(secret, header, body, now=1_769_421_600 + 299)
    assert not verify(secret, header, body, now=1_769_421_600 + 301)  # too old: a replay
    assert not verify(secret, header, body + b" ", now=1_769_421_600)  # body changed
    assert not verify(b"k2", header, body, now=1_769_421_600)  # other secret
    forged = header.replace("t=1769421600", "t=1769421700")  # moving t breaks the MAC
    assert not verify(secret, forged, body, now=1_769_421_700)
    for junk in ("", "t=,v1=", "v1=abc", "t=1769421600", "t=x,v1=ab", "t=1769421600,v1=é"):
        assert not verify(secret, junk, body, now=1_769_421_600)
    # Rotation: a header signed with two secrets verifies with either.
    both = f"{header},v1={sign(b'k2', body, 1_769_421_600).split('v1=')[1]}"
    assert verify(b"k1", both, body, now=1_769_421_600)
    assert verify(b"k2", both, body, now=1_769_421_600)


@pytest.mark.parametrize("secret", [b"k1", b"", b"x" * 64, b"y" * 65, "clé-🔑".encode() * 40])
def test_signer_reuses_its_key_and_signs_as_sign_does(secret: bytes) -> None:
    # Short, empty, exactly one block, one byte over (hashed first, RFC 2104), long UTF-8.
    signer = Signer(secret)
    bodies = [b"", b'{"id":"c1"}', "é".encode() * 3000]
    for i, body in enumerate(bodies):  # the keyed state is copied, never consumed
        assert signer(body, 1_769_421_600 + i) == sign(secret, body, 1_769_421_600 + i)
        assert verify(secret, signer(body, 1_769_421_600), body, now=1_769_421_600)
    assert "k1" not in repr(signer)


# The receiver's side, exactly as the README shows it: stdlib only, ten lines.
def receiver_verify(secret: bytes, header: str, body: bytes, tolerance_s: int = 300) -> bool:
    """header: X-Autoretry-Signature; body: the raw request body, before JSON parsing."""
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    t = next((v for k, v in parts if k == "t"), "")
    if not t.isdecimal() or abs(time.time() - int(t)) > tolerance_s:
        return False  # too old (or from the future): maybe a replay
    expected = hmac.new(secret, t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected.encode(), v.encode()) for k, v in parts if k == "v1")


def test_readme_receiver_snippet_agrees_with_sign() -> None:
    body = '{"id":"c1","status":"completed","note":"café"}'.encode()
    header = sign(b"whsec", body, int(time.time()))
    assert receiver_verify(b"whsec", header, body)
    assert not receiver_verify(b"whsec", header, body[:-1] + b" ")
    assert not receiver_verify(b"other", header, body)
    assert not receiver_verify(b"whsec", sign(b"whsec", body, int(time.time()) - 301), body)
    assert not receiver_verify(b"whsec", "t=abc,v1=00", body)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/x", "scheme 'ftp'"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("http:///nohost", "no host"),
        ("http://example.com/a\r\nX: y", "control characters"),
        ("http://example.com:99999/", "not a valid URL"),
        ("https://evil.example.net/hook", "not in webhooks.allow_hosts"),
    ],
)
def test_check_url_refuses(url: str, reason: str) -> None:
    problem = check_url(url, frozenset({"example.com"}))
    assert problem is not None and reason in problem


def test_check_url_accepts_allowed_hosts_case_insensitively() -> None:
    assert check_url("https://Example.COM:8443/h?x=1", frozenset({"example.com"})) is None
    assert check_url("http://anything.example.org/", frozenset()) is None


# ---- delivery ---------------------------------------------------------------------------
async def test_500_then_timeout_then_200_delivers_once_signed(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    clock = Clock()
    async with Receiver(scripted("500", "hang")) as rx:
        place(db, "c1", rx.url)
        async with sending(db, settings(timeout_s=0.3), clock) as (sender, results):
            first = await results.until(1)
            # Backoff ceiling 1 s after the first failure, full jitter: rng 0.5 -> 0.5 s.
            assert (first.state, first.error) == ("pending", "HTTP 500")
            assert first.at == clock() + timedelta(seconds=0.5)
            clock.advance(1)
            sender.wake()
            second = await results.until(2)
            assert (second.state, second.error) == ("pending", "timed out after 0.3 s")
            assert second.at == clock() + timedelta(seconds=1)  # ceiling 2 s x 0.5
            clock.advance(1)
            sender.wake()
            third = await results.until(3)
            assert third.state == "delivered" and third.error is None
            sent_at = int(clock().timestamp())

            # Acknowledged means never sent again: a later event is delivered and is the
            # only request after the three.
            place(db, "c2", rx.url)
            clock.advance(3600)
            sender.wake()
            await results.until(4)
            assert [r.headers["X-Autoretry-Event-Id"] for r in rx.requests[3:]] == [
                results.items[3].event_id
            ]
            assert (sender.delivered, sender.failed, sender.dead) == (2, 2, 0)

    [event, _] = outbox(db)
    assert (event.state, event.attempts, event.last_error) == ("delivered", 3, None)
    assert len(rx.requests) == 4
    for got in rx.requests[:3]:
        assert got.headers["X-Autoretry-Event-Id"] == event.id
        assert got.headers["X-Autoretry-Event"] == "queued"
        assert got.headers["Content-Type"] == "application/json"
        assert got.headers["User-Agent"].startswith("asterisk-autoretry/")
        assert got.body == event.payload.encode()
        assert json.loads(got.body)["id"] == "c1"
    delivered = rx.requests[2]
    signature = delivered.headers["X-Autoretry-Signature"]
    assert signature.startswith(f"t={sent_at},v1=")
    assert verify(SECRET.encode(), signature, delivered.body, now=sent_at)
    assert not verify(SECRET.encode(), signature, delivered.body, now=sent_at + 3600)


async def test_per_call_order_with_concurrency(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    calls = ["c1", "c2", "c3"]

    def script(n: int, got: Received) -> str:
        # The first try of every event fails: its successor must wait for the retry.
        tried = [r.headers["X-Autoretry-Event-Id"] for r in rx.requests]
        return "200" if got.headers["X-Autoretry-Event-Id"] in tried else "500"

    class Ticking(Clock):
        # Each reading is a second later, so every retry is due by the next look.
        def __call__(self) -> Any:
            self.advance(1)
            return self.at

    async with Receiver(script) as rx:
        for call_id in calls:
            place(db, call_id, rx.url, events=3)
        async with sending(db, settings(concurrency=4), Ticking(), rng=lambda: 0.0) as (_, res):
            await res.until(18)  # 9 events, each a failure then a success

    events = outbox(db)
    assert [e.state for e in events] == ["delivered"] * 9
    ids = {e.id: (e.call_id, e.seq) for e in events}
    for call_id in calls:
        seen = [(ids[r.headers["X-Autoretry-Event-Id"]][1], r.answer) for r in rx.requests]
        mine = [
            (seq, answer)
            for (seq, answer), r in zip(seen, rx.requests, strict=True)
            if ids[r.headers["X-Autoretry-Event-Id"]][0] == call_id
        ]
        seqs = [seq for seq, _ in mine]
        assert seqs == sorted(seqs) and len(seqs) == 6  # each event twice, never out of order
        assert [answer for _, answer in mine] == ["500", "200"] * 3
        statuses = [
            json.loads(r.body)["status"]
            for r in rx.requests
            if ids[r.headers["X-Autoretry-Event-Id"]][0] == call_id and r.answer == "200"
        ]
        assert statuses == ["queued", "initiated", "ringing"]
    # Calls ran side by side: the three calls' first events came before any second event.
    first_three = {ids[r.headers["X-Autoretry-Event-Id"]][0] for r in rx.requests[:3]}
    assert first_three == set(calls)


async def test_concurrency_requests_are_on_the_wire_at_once_and_no_more(tmp_path: Path) -> None:
    # Every worker takes part, each idle one is woken for the events read, and the fifth
    # event waits for a free worker. The receiver holds each request until released.
    db = tmp_path / "a.db"
    async with Receiver(lambda n, r: "hang") as rx:
        for i in range(6):
            place(db, f"c{i}", rx.url)
        async with sending(db, settings(concurrency=4), Clock()) as (sender, res):
            await rx.until(lambda: len(rx.requests) == 4)
            assert sender.delivered == 0
            with pytest.raises(TimeoutError):  # the expected outcome: nothing more is sent
                await rx.until(lambda: len(rx.requests) > 4, limit_s=0.3)
            rx.release()
            await res.until(6)
    assert [r.state for r in res.items] == ["delivered"] * 6
    assert len({r.headers["X-Autoretry-Event-Id"] for r in rx.requests}) == 6  # each once


async def test_allow_list_refusal_is_dead_and_replay_delivers(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    async with Receiver() as rx:
        place(db, "c1", rx.url)
        strict = settings(allow_hosts=["hooks.example.com"])
        async with sending(db, strict, Clock()) as (sender, results):
            dead = await results.until(1)
        assert dead.state == "dead"
        assert dead.error == "webhook host '127.0.0.1' is not in webhooks.allow_hosts"
        assert rx.requests == [] and sender.dead == 1
        [event] = outbox(db)
        assert (event.state, event.last_error) == ("dead", dead.error)

        with Store.open(db) as store:
            assert store.outbox_replay([event.id]) == 1
        allowed = settings(allow_hosts=["hooks.example.com", "127.0.0.1"])
        async with sending(db, allowed, Clock()) as (_, results):
            assert (await results.until(1)).state == "delivered"
        assert len(rx.requests) == 1
        assert rx.requests[0].headers["X-Autoretry-Event-Id"] == event.id


async def test_restart_in_the_middle_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    clock = Clock()
    async with Receiver(scripted("500", "hang")) as rx:
        place(db, "c1", rx.url)
        async with sending(db, settings(timeout_s=30), clock) as (sender, results):
            assert (await results.until(1)).error == "HTTP 500"
            clock.advance(5)
            sender.wake()
            await rx.until(lambda: len(rx.requests) == 2)  # in flight when the daemon stops
        [event] = outbox(db)
        assert (event.state, event.attempts) == ("pending", 1)  # the interrupted try is unrecorded

        async with sending(db, settings(), clock) as (_, results):  # a new process, same file
            assert (await results.until(1)).state == "delivered"
    [event] = outbox(db)
    assert (event.state, event.attempts) == ("delivered", 2)
    assert {r.headers["X-Autoretry-Event-Id"] for r in rx.requests} == {event.id}
    assert len(rx.requests) == 3


async def test_dead_at_max_age_after_a_last_try_at_the_deadline(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    clock = Clock()  # T0 + 1 s; the event was created at T0
    async with Receiver(scripted(*["503"] * 10)) as rx:
        place(db, "c1", rx.url)
        async with sending(db, settings(max_age_s=10), clock, rng=lambda: 0.999) as (s, res):
            assert (await res.until(1)).at == clock() + timedelta(seconds=0.999)
            clock.advance(8)  # T0 + 9 s: the next backoff (2 s) would pass the deadline
            s.wake()
            assert (await res.until(2)).at == T0 + timedelta(seconds=10)  # clamped to it
            clock.advance(1)
            s.wake()
            last = await res.until(3)
    assert (last.state, last.error) == ("dead", "HTTP 503")
    [event] = outbox(db)
    assert (event.state, event.attempts) == ("dead", 3)
    assert len(rx.requests) == 3


async def test_redirect_is_not_followed(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    async with Receiver(scripted("302")) as rx:
        place(db, "c1", rx.url)
        async with sending(db, settings(), Clock()) as (_, results):
            assert (await results.until(1)).error == "HTTP 302"
    assert [r.path for r in rx.requests] == ["/hook"]


async def test_small_answers_reuse_the_connection_a_big_one_is_cut_off(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    async with Receiver(scripted("200", "200", "big", "200")) as rx:
        for i in range(4):
            place(db, f"c{i}", rx.url)
        async with sending(db, settings(concurrency=1), Clock()) as (_, results):
            await results.until(4)
    assert [r.state for r in results.items] == ["delivered"] * 4  # a big body is still a 2xx
    peers = [r.peer for r in rx.requests]
    assert peers[0] == peers[1] == peers[2]  # read whole: the connection went back to the pool
    assert peers[3] != peers[2]  # read in part (256 KiB > 64 KiB): closed, a new one


async def test_connection_refused_is_a_retry_not_an_exception(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    place(db, "c1", f"http://127.0.0.1:{closed_port()}/hook")
    async with sending(db, settings(), Clock()) as (_, results):
        result = await results.until(1)
    assert result.state == "pending"
    assert result.error is not None and result.error.startswith("ClientConnectorError")


async def test_no_destination_is_recorded_not_sent(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    place(db, "c1", None)
    async with sending(db, settings(), Clock()) as (sender, results):
        result = await results.until(1)
    assert (result.state, result.error, sender.delivered) == ("delivered", NO_URL, 0)
    [event] = outbox(db)
    assert (event.state, event.attempts, event.last_error) == ("delivered", 0, NO_URL)


async def test_default_url_unsigned_and_secrets_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "a.db"
    clock = Clock()
    async with Receiver(scripted("500", "200", "500")) as rx:
        place(db, "c1", None)  # no call URL: the configured default is used
        token_url = f"http://127.0.0.1:{rx.port}/hook?token=tok-abc123"
        unsigned = WebhooksSettings.model_validate({"url": token_url})
        async with sending(db, unsigned, clock) as (sender, results):
            await results.until(1)
            clock.advance(1)
            sender.wake()
            assert (await results.until(2)).state == "delivered"
        assert "X-Autoretry-Signature" not in rx.requests[1].headers
        assert rx.requests[1].path == "/hook"

        place(db, "c2", f"http://user:pw-xyz@127.0.0.1:{rx.port}/hook?token=tok-abc123")
        async with sending(db, settings(), clock) as (sender, results):
            await results.until(1)
            clock.advance(1)
            sender.wake()
            assert (await results.until(2)).state == "delivered"
    signature = rx.requests[-1].headers["X-Autoretry-Signature"]
    text = caplog.text
    assert text.count("UNSIGNED") == 1  # said once, by the sender that had no secret
    for secret in ("tok-abc123", "pw-xyz", SECRET, signature):
        assert secret not in text
    # A failure's log line still names where it went.
    assert f"to http://127.0.0.1:{rx.port} failed: HTTP 500" in text


class Reads:
    """Counts the sender's reads (its deferred BEGINs) through SQLite's trace hook, which
    runs in the database thread; ``until`` waits on the loop for a count."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.count = 0
        self._loop = loop
        self._changed = asyncio.Event()

    def trace(self, sql: str) -> None:
        if sql == "BEGIN":
            self._loop.call_soon_threadsafe(self._bump)

    def _bump(self) -> None:
        self.count += 1
        self._changed.set()

    async def until(self, count: int, limit_s: float) -> None:
        async def wait() -> None:
            while self.count < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), limit_s)


async def test_heads_in_backoff_are_waited_for_not_read_again_and_again(tmp_path: Path) -> None:
    # More heads in backoff than an idle sender's first read takes (4 x concurrency): the
    # read comes back full of events not yet due, and the sender must wait for the soonest
    # (0.5 s away: the clock is held) instead of reading them again at once.
    db = tmp_path / "a.db"
    n = 12
    async with Receiver(scripted(*["500"] * n)) as rx:
        for i in range(n):
            place(db, f"c{i:02d}", rx.url)
        results = Results()
        async with Writer(db) as writer:
            reads = Reads(asyncio.get_running_loop())
            await writer(lambda store: store.db.conn.set_trace_callback(reads.trace))
            config = settings(concurrency=2)
            sender = WebhookSender(
                writer, config, clock=Clock(), rng=lambda: 0.5, on_settled=results
            )
            task = asyncio.create_task(sender.run())
            try:
                await results.until(n)  # every head failed once: pending, due in 0.5 s
                assert {r.state for r in results.items} == {"pending"}
                seen = reads.count
                # Waiting, it reads at most once or twice in 0.4 s (once when the results
                # came in, maybe once more); spinning, it would read dozens of times.
                with pytest.raises(TimeoutError):
                    await reads.until(seen + 5, limit_s=0.4)
            finally:
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
    assert len(rx.requests) == n  # and nothing was sent twice meanwhile
