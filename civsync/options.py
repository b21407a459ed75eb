"""Command-line options every ``civsync`` command group shares."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file (default: $CIVSYNC_CONFIG)")
]
