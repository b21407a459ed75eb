"""Command-line options every ``civsync`` command group shares."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file (default: $CIVSYNC_CONFIG)")
]
MetricsPortOption = Annotated[
    int, typer.Option(min=0, max=65535, help="Serve /metrics and /healthz on this port; 0: off")
]
MetricsHostOption = Annotated[
    str, typer.Option(help="The address --metrics-port listens on (0.0.0.0: every interface)")
]
