"""Adapters between civsync's core and the outside world: PostgreSQL, Kafka, the schema registry.

Vendor errors are translated here into ``engine.errors`` classes; nothing above this
package imports psycopg or confluent_kafka types.
"""
