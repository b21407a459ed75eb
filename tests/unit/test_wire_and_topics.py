"""Pure pieces of the Kafka adapters: wire-format framing and topic specifications."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.kafka.admin import FOREVER, TopicSpec
from connectors.kafka.avro import DecodingError, schema_id


@given(st.integers(min_value=0, max_value=2**31 - 1), st.binary(max_size=64))
def test_schema_id_reads_the_confluent_header(registered: int, body: bytes) -> None:
    assert schema_id(struct.pack(">bI", 0, registered) + body) == registered


def test_schema_id_refuses_another_magic_byte() -> None:
    with pytest.raises(DecodingError, match="magic byte 1"):
        schema_id(b"\x01\x00\x00\x00\x07payload")


def test_schema_id_refuses_a_truncated_header() -> None:
    with pytest.raises(DecodingError, match="shorter than the wire header"):
        schema_id(b"\x00\x00")


def test_topic_spec_config() -> None:
    assert TopicSpec("t", 3).config() == {"cleanup.policy": "delete"}
    compacted = TopicSpec("p", 12, retention_ms=FOREVER, compacted=True)
    assert compacted.config() == {"cleanup.policy": "compact", "retention.ms": "-1"}
