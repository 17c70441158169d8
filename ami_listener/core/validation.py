"""Checks on text that ends up in a dial: phone numbers and channel variables.

Separate from the pydantic input models because the dial builders (``dialing``,
``callfile``) apply the same checks to data that never went through a model; this module
needs no pydantic. Pure: no clock, no I/O.
"""

from __future__ import annotations

import re

import phonenumbers

# Channel variable names: what Asterisk accepts in Set() and that cannot smuggle syntax.
VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# CR, LF and NUL end AMI and call-file lines; the other control characters (and Unicode line
# separators) have no business in a dial argument and would confuse logs and readers.
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
_FORBIDDEN_IN_VALUES = CONTROL_CHARS
MAX_VARIABLE_VALUE = 1024


def check_variable(name: str, value: str) -> None:
    """Raise ValueError unless ``name=value`` is safe as an AMI/call-file variable.

    CR, LF and NUL would end the AMI line or the call-file line and inject headers.
    A comma would be taken by Asterisk as a separator in several Variable forms, and
    ``;`` starts a comment in call files; both are refused in values.
    """
    if not VARIABLE_NAME.match(name):
        raise ValueError(f"variable name {name!r} must match {VARIABLE_NAME.pattern}")
    if _FORBIDDEN_IN_VALUES.search(value):
        raise ValueError(
            f"variable {name}: value contains CR, LF, NUL or another control character"
        )
    if "," in value or ";" in value:
        raise ValueError(f"variable {name}: value must not contain ',' or ';'")
    if len(value) > MAX_VARIABLE_VALUE:
        raise ValueError(f"variable {name}: value longer than {MAX_VARIABLE_VALUE} characters")


def normalize_number(raw: str, *, allow_pattern: re.Pattern[str] | None = None) -> str:
    """Return ``raw`` as an E.164 number, or raise ValueError saying why not.

    ``allow_pattern`` is the operator's escape hatch for numbers that are not E.164
    (internal extensions, carrier prefixes): a full match is accepted as it is.
    """
    if not isinstance(raw, str):
        raise ValueError("phone number must be a string")
    text = raw.strip(" \t")  # not CR/LF: those are refused below, never silently eaten
    # Checked before the operator's pattern: a loose pattern must not admit line breaks or
    # the characters that split a dial string.
    if _FORBIDDEN_IN_VALUES.search(text):
        raise ValueError("phone number contains CR, LF, NUL or another control character")
    if any(c in text for c in ",;&|"):
        raise ValueError("phone number contains ',', ';', '&' or '|'")
    if allow_pattern is not None and allow_pattern.fullmatch(text):
        return text
    if not re.fullmatch(r"\+[1-9][0-9]{1,14}", text):
        raise ValueError(f"phone number {text!r} is not E.164 (+ then 2 to 15 digits)")
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"phone number {text!r} could not be parsed: {exc}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError(f"phone number {text!r} is not a valid number for its country")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
