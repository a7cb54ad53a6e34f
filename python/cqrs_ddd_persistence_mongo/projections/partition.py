"""Partitioning read-model documents across rebuild workers.

A document belongs to partition ``blake2b(BSON of its canonical _id) mod N``: stable across
processes, machines and Python versions (unlike ``hash()``), and the same for a composite
key written in any field order. Workers that own disjoint partitions write disjoint
documents, so they need no coordination; on a sharded cluster the same split runs on
several machines.
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

import bson

from .. import _accel
from ..exceptions import ProjectionError


def partition_of(doc_id: Any, partitions: int) -> int:
    """The partition (0..partitions-1) of the document ``doc_id``."""
    if partitions == 1:
        return 0
    encoded = bson.encode({"": _accel.canonical_id(doc_id)})
    digest = blake2b(encoded, digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


@dataclass(frozen=True, slots=True)
class Partition:
    """Worker ``index`` of ``count``: owns the documents whose partition is ``index``."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or self.count < 1:
            raise ProjectionError(f"workers must be a positive int, not {self.count!r}")
        if not 0 <= self.index < self.count:
            raise ProjectionError(f"partition index {self.index} is outside 0..{self.count - 1}")

    @property
    def is_whole(self) -> bool:
        return self.count == 1

    def owns(self, doc_id: Any) -> bool:
        return self.count == 1 or partition_of(doc_id, self.count) == self.index

    @property
    def suffix(self) -> str:
        """Checkpoint-name suffix: each worker keeps its own checkpoint."""
        return "" if self.count == 1 else f"::p{self.index}of{self.count}"


WHOLE = Partition()
