"""civsync's pure core: the person model, clocks, merge rules and field policies.

Nothing in this package performs I/O. It talks to the world only through the small
protocols it declares; connectors/ implements them for PostgreSQL, Kafka and the registry.
"""
