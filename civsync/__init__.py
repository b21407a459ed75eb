"""civsync application layer: configuration, the CLI and the local service launcher.

The pure core lives in ``engine``; adapters to PostgreSQL, Kafka and the registry live in
``connectors``. This package wires them together for operators.
"""

__version__ = "0.1.0"
