"""What a sink commits after a batch: that batch's offsets, named, never "the current
positions" (read by librdkafka's thread later, when the next batch may have been consumed
and not yet applied: a failure then lost its changes)."""

from __future__ import annotations

from confluent_kafka import KafkaError, Message

from connectors.merge.sink import _after


def test_a_batch_commits_each_partitions_last_offset_plus_one() -> None:
    batch = [
        Message(topic="p.person", partition=0, offset=7),
        Message(topic="p.person", partition=1, offset=3),
        Message(topic="p.person", partition=0, offset=8),
        Message(topic="p.sink.civil.retry", partition=0, offset=0),
        Message(topic="p.person", partition=2, offset=99, error=KafkaError(KafkaError._TRANSPORT)),
    ]
    committed = {(tp.topic, tp.partition): tp.offset for tp in _after(batch)}
    assert committed == {("p.person", 0): 9, ("p.person", 1): 4, ("p.sink.civil.retry", 0): 1}
