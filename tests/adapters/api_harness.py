"""The API under test: a real SQLite file behind a real ``Writer``, served by aiohttp's
``TestServer`` on 127.0.0.1 and spoken to with its ``TestClient`` (real HTTP)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from ami_listener.api import create_app
from ami_listener.config import Settings
from ami_listener.store import Store
from ami_listener.writer import Writer

T = TypeVar("T")
T0 = datetime(2026, 1, 26, 10, 0, tzinfo=UTC)
TOKEN = "api-t0ken-value"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY = 64 * 1024
MAX_ROWS = 20
NUMBER = "+14155550100"
NUMBER_2 = "+14155550101"

TOML = f"""\
[ami]
username = "autoretry"
secret = "ami-s3cret-value"
[database]
path = "autoretry.db"
[api]
token = "{TOKEN}"
max_body_bytes = {MAX_BODY}
max_csv_rows = {MAX_ROWS}
[dialer]
channel = "PJSIP/{{number}}@carrier"
[targets.sales-ivr]
context = "autoretry-connect"
extension = "s"
[targets.playback]
application = "Playback"
data = "hello-world"
[webhooks]
allow_hosts = ["hooks.example.test"]
"""


def load_settings(tmp_path: Path, extra_toml: str = "") -> Settings:
    path = tmp_path / "autoretry.toml"
    path.write_text(TOML + extra_toml)
    return Settings.load(path, {})


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Api:
    client: TestClient[Any, Any]
    writer: Writer
    settings: Settings
    clock: Clock
    checks: dict[str, bool]
    woken: list[datetime] = field(default_factory=list)

    async def store(self, fn: Callable[[Store], T]) -> T:
        return await self.writer(fn)

    async def post_call(
        self, body: Any, *, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        resp = await self.client.post("/call", json=body, headers={**AUTH, **(headers or {})})
        return resp.status, await resp.json()

    async def get(self, path: str) -> tuple[int, Any]:
        resp = await self.client.get(path, headers=AUTH)
        return resp.status, await resp.json()

    async def post(self, path: str, **kw: Any) -> tuple[int, Any]:
        resp = await self.client.post(path, headers=AUTH, **kw)
        return resp.status, await resp.json()


@asynccontextmanager
async def running_api(tmp_path: Path, extra_toml: str = "") -> AsyncIterator[Api]:
    settings = load_settings(tmp_path, extra_toml)
    clock = Clock()
    counter = itertools.count(1)
    checks = {"ami": True}
    woken: list[datetime] = []
    async with Writer(settings.database.path) as writer:
        app = create_app(
            settings,
            writer,
            clock=clock,
            new_id=lambda: f"id{next(counter):04d}",
            wake=lambda: woken.append(clock()),
            health=lambda: dict(checks),
        )
        async with TestClient(TestServer(app)) as client:
            yield Api(client, writer, settings, clock, checks, woken)


def csv_form(
    text: str | bytes,
    *,
    agent_id: str | None = "sales-ivr",
    retry_config: str | None = None,
    from_numbers: tuple[str, ...] = (),
    webhook_url: str | None = None,
    extra: dict[str, str] | None = None,
) -> FormData:
    form = FormData()
    if agent_id is not None:
        form.add_field("agent_id", agent_id)
    data = text.encode() if isinstance(text, str) else text
    form.add_field("file", data, filename="contacts.csv", content_type="text/csv")
    for number in from_numbers:
        form.add_field("from_phone_numbers", number)
    if retry_config is not None:
        form.add_field("retry_config", retry_config)
    if webhook_url is not None:
        form.add_field("webhook_url", webhook_url)
    for name, value in (extra or {}).items():
        form.add_field(name, value)
    return form
