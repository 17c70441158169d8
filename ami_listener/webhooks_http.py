"""The HTTP side of webhook delivery that needs no sender state: which URLs may be posted
to, what of a URL may be logged, a failure as text, and reading an answer's body."""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp

MAX_RESPONSE_BYTES = 64 * 1024  # read (and drop) this much so the connection is reused


def safe_url(url: str) -> str:
    """``url`` without user info, path and query: what may appear in a log line."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    return f"{parts.scheme}://{parts.hostname or ''}{port}"


def check_url(url: str, allow_hosts: frozenset[str]) -> str | None:
    """Why ``url`` may not be posted to, or None if it may (``allow_hosts`` empty: any)."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "webhook URL contains whitespace or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not 0..65535
    except ValueError:
        return "webhook URL is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return f"webhook URL scheme {parts.scheme!r} is not http or https"
    if not parts.hostname:
        return "webhook URL has no host"
    if allow_hosts and parts.hostname.lower() not in allow_hosts:
        return f"webhook host {parts.hostname!r} is not in webhooks.allow_hosts"
    return None


def describe_error(exc: BaseException, timeout_s: float) -> str:
    """A failed request as ``last_error`` text: one line, no URL (it may hold a token)."""
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout_s:g} s"
    if isinstance(exc, aiohttp.InvalidURL):  # its text is the URL, which may hold a token
        return "invalid URL"
    text = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def drain_body(resp: aiohttp.ClientResponse) -> None:
    # A fully read small body returns the connection to the pool; a big one is cut off
    # (the connection is then closed rather than reused, which is the right trade).
    content = resp.content
    left = MAX_RESPONSE_BYTES
    # at_eof: the usual small body came whole in the first read; no second await for b"".
    while left > 0 and not content.at_eof() and (chunk := await content.read(left)):
        left -= len(chunk)
