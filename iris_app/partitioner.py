"""Kafka's default partitioner: the murmur2 hash of the key, as the Java client and aiokafka compute it.

aiokafka's `DefaultPartitioner` does the same in pure Python a byte at a time, which
costs more per classified record than building it. Here the key's 4-byte words are
read at once and each takes four integer operations: the same partitions, a few
times faster.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence

SEED, M, MASK = 0x9747B28C, 0x5BD1E995, 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of `data` (org.apache.kafka.common.utils.Utils.murmur2), as an unsigned 32-bit int."""
    length = len(data)
    h = SEED ^ length
    words = length // 4
    for k in struct.unpack_from(f"<{words}I", data):
        k = (k * M) & MASK
        k = ((k ^ (k >> 24)) * M) & MASK
        h = ((h * M) & MASK) ^ k
    tail = length & ~3
    extra = length - tail
    if extra >= 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h = ((h ^ data[tail]) * M) & MASK
    h = ((h ^ (h >> 13)) * M) & MASK
    return h ^ (h >> 15)


def partition_of(key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
    """The partition of a record keyed `key`, as aiokafka's DefaultPartitioner picks it (a random
    available one for no key)."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[(murmur2(key) & 0x7FFFFFFF) % len(all_partitions)]
