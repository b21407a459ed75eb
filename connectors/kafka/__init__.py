"""Kafka adapters: topic administration and Avro producers/consumers in the registry wire format."""
