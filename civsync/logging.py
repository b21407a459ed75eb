"""Structured JSON logs with personal data masked.

Keys that carry personal data (PINs, names, dates of birth) are masked wherever they appear,
and any 12-digit run that looks like a PIN is masked inside free text too, so an unexpected
value cannot leak through a message.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

PERSONAL_KEYS = frozenset(
    {
        "pin",
        "old_pin",
        "new_pin",
        "name",
        "full_name",
        "birth_date",
        "date_of_birth",
        "dob",
        "father_name",
        "mother_name",
        "spouse_name",
    }
)
_PIN = re.compile(r"(?<!\d)(\d{3})\d{7}(\d{2})(?!\d)")


def mask_pin(text: str) -> str:
    """``001099012345`` becomes ``001*******45``: the province code and check digits stay."""
    return _PIN.sub(lambda m: f"{m.group(1)}{'*' * 7}{m.group(2)}", text)


def mask_personal_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask personal fields and PIN-like text in every log line."""
    for key, value in list(event_dict.items()):
        if key in PERSONAL_KEYS and value is not None:
            event_dict[key] = "***"
        elif isinstance(value, str):
            event_dict[key] = mask_pin(value)
    return event_dict


def configure(level: str = "INFO") -> None:
    """JSON lines on stderr, with context variables and masking."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            mask_personal_data,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
