"""Personal data never reaches a log line unmasked."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr

import structlog

from civsync import logging as civsync_logging


def test_personal_fields_and_pin_like_text_are_masked() -> None:
    buffer = io.StringIO()
    with redirect_stderr(buffer):
        civsync_logging.configure("INFO")
        structlog.get_logger("t").info(
            "merge.applied",
            pin="001099012345",
            full_name="Nguyễn Thị Hương",
            birth_date="1999-03-01",
            detail="conflict on 079203000777 resolved",
            table="person",
        )
    structlog.reset_defaults()
    line = json.loads(buffer.getvalue().strip().splitlines()[-1])
    assert line["pin"] == "***"
    assert line["full_name"] == "***"
    assert line["birth_date"] == "***"
    assert line["detail"] == "conflict on 079*******77 resolved"
    assert line["table"] == "person"
    assert "001099012345" not in buffer.getvalue()
