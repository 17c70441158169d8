"""Tell a running daemon that another process changed the database (``POST /wake``).

The CLI writes calls and cancels straight into SQLite; the daemon, asleep until its next
due call, would not look before then. One authenticated request to its API wakes it. No
daemon answering is not an error: the change is committed and is read when it starts.
"""

from __future__ import annotations

import http.client

from .config import Settings, split_listen


def nudge_daemon(settings: Settings, timeout_s: float = 2.0) -> bool:
    """True if a daemon on ``[api].listen`` acknowledged; False if none answered."""
    host, port = split_listen(settings.api.listen)
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a wildcard bind is reached on loopback
        host = "127.0.0.1"
    token = settings.api.token.get_secret_value() if settings.api.token else ""
    connection = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        connection.request("POST", "/wake", headers={"Authorization": f"Bearer {token}"})
        return connection.getresponse().status == 204
    except OSError:
        return False
    finally:
        connection.close()
