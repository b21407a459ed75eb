"""The merger's state on local disk: one RocksDB database per partition of the changelog.

It owns the directory ``<directory>/<partition>`` of each partition the process holds
(conventionally ``<state_dir>/<group>/<partition>``), and in each database:

- one record per person: the person key (UTF-8) -> the person's state, bytes the merger
  encodes (the store never reads them);
- the next offset of the changelog partition that the database has seen up to, under the key
  ``b"\\x00next_offset"``. A person key never starts with NUL, so it cannot clash.

The database only ever receives committed state: once the merger's Kafka transaction has
committed, ``write`` applies the people it changed together with the next changelog offset,
in one WriteBatch, so the people and the offset are always consistent. On assignment the
merger opens the partition, asks ``next_offset()`` and reads the changelog from there (from
the start if ``None``) to its end, writing each batch of records as it goes; if the stored
offset lies beyond the changelog's end (the topic was recreated), ``reset`` empties the
database and the restore starts from the beginning.

Memory is bounded for the whole process, not per database: every partition shares one block
cache and one write-buffer manager charged to that cache (see ``StateStore``), so RocksDB
holds about ``cache_bytes`` whatever the number of people or partitions. bench/merger_state.py
measures it with 10 million people.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import cast

from rocksdict import (
    BlockBasedOptions,
    Cache,
    DBCompressionType,
    Options,
    Rdict,
    WriteBatch,
    WriteBufferManager,
)

NEXT_OFFSET = b"\x00next_offset"  # the metadata key; person keys never start with NUL
MiB = 1 << 20
CACHE_BYTES = 256 * MiB  # block cache and memtables of the whole process
WRITE_BUFFER_BYTES = 64 * MiB  # memtables of the whole process, inside CACHE_BYTES


class PartitionStore:
    """The people of one changelog partition, in one open RocksDB database."""

    def __init__(self, path: Path, options: Options):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(path), options)

    def get(self, key: str) -> bytes | None:
        value: bytes | None = self._db.get(key.encode())
        return value

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The states of those of ``keys`` that are stored (one RocksDB multi-get)."""
        wanted = list(keys)
        values = cast(list[bytes | None], self._db.get([key.encode() for key in wanted]))
        return {key: value for key, value in zip(wanted, values, strict=True) if value is not None}

    def next_offset(self) -> int | None:
        """The changelog offset to restore from; ``None``: from its beginning."""
        value: bytes | None = self._db.get(NEXT_OFFSET)
        return None if value is None else int.from_bytes(value, "big")

    def write(self, items: Mapping[str, bytes | None], next_offset: int) -> None:
        """Store ``items`` (``None`` deletes a person) and ``next_offset``, atomically."""
        batch = WriteBatch(raw_mode=True)
        for key, value in items.items():
            if key.startswith("\x00"):
                raise ValueError(f"a person key cannot start with NUL: {key!r}")
            if value is None:
                batch.delete(key.encode())
            else:
                batch.put(key.encode(), value)
        batch.put(NEXT_OFFSET, next_offset.to_bytes(8, "big"))
        self._db.write(batch)

    def count(self) -> int:
        """About how many people are stored: RocksDB's ``estimate-num-keys``, less the
        offset. Until compaction merges them, each overwrite (of a person, or of the offset:
        one per ``write``) counts once more, and a deletion of a person not stored once less."""
        estimate = self._db.property_int_value("rocksdb.estimate-num-keys") or 0
        return max(estimate - 1, 0)  # less the offset

    def items(self) -> Iterator[tuple[str, bytes]]:
        """Every person and state, in key order (for tools: a full scan)."""
        for key, value in cast(Iterator[tuple[bytes, bytes]], self._db.items()):
            if key != NEXT_OFFSET:
                yield key.decode(), value

    def close(self) -> None:
        self._db.close()


class StateStore:
    """The open partitions of one merger process, under ``directory``, sharing one memory
    budget.

    RocksDB options, for a small budget:

    - one LRU block cache of ``cache_bytes`` for every partition; index and filter blocks are
      kept in it too (otherwise they would sit outside any bound, growing with the data);
    - memtables: ``write_buffer_bytes`` for the whole process, charged to that cache, so
      cache and memtables together stay about within ``cache_bytes``; a memtable is flushed at
      16 MiB, or sooner when the process total nears its bound;
    - at most 64 open files per partition (file descriptors and table readers);
    - 10-bit Bloom filters, so that a get for a person not yet stored rarely reads the disk;
    - LZ4 compression, two background jobs, small info logs;
    - the write-ahead log on, unsynced: a process crash loses no write; a machine crash may
      lose the last ones, offset with them, which the next restore reads again.
    """

    def __init__(
        self,
        directory: Path,
        *,
        cache_bytes: int = CACHE_BYTES,
        write_buffer_bytes: int = WRITE_BUFFER_BYTES,
    ):
        self.directory = directory
        self._partitions: dict[int, PartitionStore] = {}
        cache = Cache(cache_bytes)
        table = BlockBasedOptions()
        table.set_block_cache(cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_bloom_filter(10, False)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_block_based_table_factory(table)
        options.set_write_buffer_manager(
            WriteBufferManager.new_write_buffer_manager_with_cache(write_buffer_bytes, False, cache)
        )
        options.set_write_buffer_size(16 * MiB)
        options.set_max_write_buffer_number(2)
        options.set_max_open_files(64)
        options.set_compression_type(DBCompressionType.lz4())
        options.set_max_background_jobs(2)
        options.set_keep_log_file_num(2)
        options.set_max_log_file_size(MiB)
        self._options = options

    def open(self, partition: int) -> PartitionStore:
        """The database of ``partition``, opened (created if new) unless it already is."""
        if partition not in self._partitions:
            path = self.directory / str(partition)
            self._partitions[partition] = PartitionStore(path, self._options)
        return self._partitions[partition]

    def partition(self, partition: int) -> PartitionStore:
        """The open database of ``partition`` (KeyError if it is not open)."""
        return self._partitions[partition]

    def reset(self, partition: int) -> PartitionStore:
        """Delete the database of ``partition`` and open it again, empty."""
        self.close(partition)
        shutil.rmtree(self.directory / str(partition), ignore_errors=True)
        return self.open(partition)

    def close(self, partition: int) -> None:
        store = self._partitions.pop(partition, None)
        if store is not None:
            store.close()

    def close_all(self) -> None:
        for partition in list(self._partitions):
            self.close(partition)

    def count(self) -> int:
        """About how many people the open partitions hold (see ``PartitionStore.count``)."""
        return sum(store.count() for store in self._partitions.values())
