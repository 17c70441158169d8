"""A batch's CSV (Bolna's ``file``): one call per row, bad rows reported, good rows kept.

The ``contact_number`` column is the number to call; every other column becomes a
channel variable of that row's call, validated like ``user_data`` (``CallRequest``). A
row that fails is reported by its line in the file (the header is line 1) and the field
at fault, and left out; the rest of the batch goes in. What is wrong with the file as a
whole (not UTF-8, no ``contact_number`` column, a column name that cannot be a variable,
more rows than allowed) refuses the whole upload.

The calls are built here, not stored: ``queued`` with ``scheduled_at`` None, so nobody
is dialled until the batch is scheduled (see ``store_api``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pydantic

from .config import Settings
from .core.lifecycle import Effect, Notify, new_call
from .core.models import Call, CallRequest, RetryConfig, check_variable, evolve
from .errors import ValidationError
from .placing import RequestInvalid, field_errors, validation_context

NUMBER_COLUMN = "contact_number"
MAX_REPORTED_ERRORS = 1000  # a file of 100k bad rows must not make a 100k-item answer
_RESERVED_PREFIX = "AUTORETRY_"


class TooManyRows(ValidationError):
    """The file has more data rows than ``[api].max_csv_rows``."""


@dataclass(slots=True)
class Contacts:
    calls: list[tuple[Call, tuple[Effect, ...]]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)  # the first MAX_REPORTED_ERRORS
    rejected: int = 0

    def reject(self, line: int, problems: Sequence[dict[str, Any]]) -> None:
        self.rejected += 1
        for problem in problems:
            if len(self.errors) < MAX_REPORTED_ERRORS:
                self.errors.append({"line": line, **problem})


def _file_error(message: str) -> RequestInvalid:
    return RequestInvalid([{"field": "file", "message": message}])


def _header(row: list[str]) -> list[str]:
    names = [name.strip() for name in row]
    if NUMBER_COLUMN not in names:
        raise _file_error(f"the header has no {NUMBER_COLUMN!r} column")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise _file_error(f"column {name!r} appears twice")
        seen.add(name)
        if name == NUMBER_COLUMN:
            continue
        try:
            check_variable(name, "")
        except ValueError as exc:
            raise _file_error(f"column {name!r} cannot be a variable: {exc}") from None
        if name.upper().startswith(_RESERVED_PREFIX):
            raise _file_error(f"column {name!r}: the {_RESERVED_PREFIX} prefix is reserved")
    return names


def _value_problems(values: dict[str, str]) -> list[dict[str, Any]]:
    problems = []
    for name, value in values.items():
        try:
            check_variable(name, value)
        except ValueError as exc:
            problems.append({"field": name, "message": str(exc)})
    return problems


def _row_problems(exc: pydantic.ValidationError, *, skip_variables: bool) -> list[dict[str, Any]]:
    problems = []
    for problem in field_errors(exc):
        if problem["field"] == "recipient_phone_number":
            problem["field"] = NUMBER_COLUMN
        elif problem["field"] == "user_data" and skip_variables:
            continue  # already reported per column
        problems.append(problem)
    return problems


def read_contacts(
    data: bytes,
    *,
    settings: Settings,
    agent_id: str,
    from_numbers: Sequence[str],
    retry_config: RetryConfig,
    batch_id: str,
    now: datetime,
    new_id: Callable[[], str],
    max_rows: int,
) -> Contacts:
    """Build the calls of a batch from the CSV ``data``; CPU-bound (run it off the loop).

    ``from_numbers`` (already validated) are used in turn, one per accepted row.
    Raises ``RequestInvalid`` (field ``file``) or ``TooManyRows`` for the file as a whole.
    """
    try:
        text = data.decode("utf-8-sig")  # a BOM is what spreadsheets write first
    except UnicodeDecodeError as exc:
        raise _file_error(f"not UTF-8 text (byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    context = validation_context(settings)
    out = Contacts()
    rows = 0
    try:
        names = None
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if names is None:
                names = _header(row)
                continue
            rows += 1
            if rows > max_rows:
                raise TooManyRows(
                    f"the file has more than {max_rows} rows ([api].max_csv_rows)", field="file"
                )
            line = reader.line_num  # the row's last physical line (quoted fields may span)
            if len(row) != len(names):
                message = f"{len(row)} values for {len(names)} columns"
                out.reject(line, [{"field": "file", "message": message}])
                continue
            values = dict(zip(names, row, strict=True))
            body = {
                "agent_id": agent_id,
                "recipient_phone_number": values.pop(NUMBER_COLUMN),
                "from_phone_number": from_numbers[len(out.calls) % len(from_numbers)]
                if from_numbers
                else None,
                "user_data": values,
                "retry_config": retry_config,
            }
            # Each value checked on its own, so a bad one is named by its column (the
            # model's user_data check would stop at the first and call it user_data).
            problems = _value_problems(values)
            try:
                request = CallRequest.model_validate(body, context=context)
            except pydantic.ValidationError as exc:
                problems += _row_problems(exc, skip_variables=bool(problems))
            if problems:
                out.reject(line, problems)
                continue
            call, effects = new_call(new_id(), request, now, batch_id=batch_id)
            # Not due until the batch is scheduled; only the "queued" event is kept.
            kept = tuple(e for e in effects if isinstance(e, Notify))
            out.calls.append((evolve(call, scheduled_at=None), kept))
    except csv.Error as exc:
        raise _file_error(f"line {reader.line_num}: not valid CSV: {exc}") from None
    if names is None:
        raise _file_error("the file is empty (a header with contact_number is expected)")
    if rows == 0:
        raise _file_error("the file has a header but no rows")
    return out
