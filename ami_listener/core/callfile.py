"""Render an attempt as an Asterisk call file (pbx_spool's format).

``MaxRetries: 0``: Asterisk makes one attempt; retries are ours (policy, windows, history).
``Archive: yes`` keeps the file in ``outgoing_done`` with its final ``Status:`` line, which
an administrator can read after the fact.
"""

from __future__ import annotations

from .dialing import DialRequest
from .models import CONTROL_CHARS


def render(request: DialRequest, *, archive: bool = True) -> str:
    """The call file text for ``request``; raises ValueError on any unsafe value."""
    target = request.target
    lines = [
        ("Channel", request.channel),
        ("MaxRetries", "0"),
        ("RetryTime", "60"),
        ("WaitTime", str(max(1, round(request.timeout_s)))),
    ]
    if request.caller_id:
        lines.append(("CallerID", request.caller_id))
    if target.application is not None:
        lines += [("Application", target.application), ("Data", target.data)]
    else:
        assert target.context is not None and target.extension is not None
        lines += [
            ("Context", target.context),
            ("Extension", target.extension),
            ("Priority", str(target.priority)),
        ]
    lines += [("Setvar", f"{k}={v}") for k, v in request.variables.items()]
    lines.append(("Archive", "yes" if archive else "no"))
    for key, value in lines:
        # pbx_spool reads line by line and treats ';' as a comment start: refuse both.
        if CONTROL_CHARS.search(value) or ";" in value:
            raise ValueError(f"call file {key} contains CR, LF, NUL or ';'")
    return "".join(f"{key}: {value}\n" for key, value in lines)
