"""Where the benchmarks keep their Kafka Connect worker: ``.run/connect``.

The worker, its runtime and its plugins (Debezium's PostgreSQL source and JDBC sink, Apicurio's
converter) are civsync.services.connect's, shared with the integration tests; a test and a
benchmark run on the same machine resolve them once.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOME = ROOT / ".run" / "connect"
