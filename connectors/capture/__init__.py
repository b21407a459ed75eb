"""Log-based change capture from a PostgreSQL store into Kafka (wal2json over a logical slot)."""
