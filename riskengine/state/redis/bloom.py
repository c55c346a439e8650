"""A Bloom filter: a bit array and k probes, sized for n items at a false-positive rate p.

The filter answers "certainly not added" or "maybe added": never a false negative, and a
false positive with probability about p while it holds at most n items. Sizes follow the
textbook optimum, ``m = ceil(-n ln p / (ln 2)²)`` bits and ``k = round((m / n) ln 2)``
probes. The k probe positions come from two base hashes (Kirsch–Mitzenmacher),
``g_i = (h1 + i·h2) mod m``, with h1, h2 the two halves of one 128-bit BLAKE2b digest of
the item's UTF-8 bytes: stable across processes and machines (never the built-in
``hash()``), so two workers fed the same items hold the same bits.

    >>> f = BloomFilter(1000, 0.01)
    >>> f.bits, f.hashes
    (9586, 7)
    >>> f.add("acct-1"), f.add("acct-1")
    (True, False)
    >>> "acct-1" in f, f.count
    (True, 1)

Writers must be serialised by the caller (one bit set is a read-modify-write of a byte);
readers need no lock: a reader sees every bit set before its read began.
"""

from __future__ import annotations

import hashlib
import math

__all__ = ["BloomFilter", "optimal_size"]

_LN2 = math.log(2)


def optimal_size(capacity: int, fp_rate: float) -> tuple[int, int]:
    """``(m, k)``: bits and probes for `capacity` items at false-positive rate `fp_rate`.

    >>> optimal_size(1_000_000, 0.001)
    (14377588, 10)
    """
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"capacity must be a positive integer, not {capacity!r}")
    if not 0.0 < fp_rate < 1.0:
        raise ValueError(f"fp_rate must be between 0 and 1 (exclusive), not {fp_rate!r}")
    bits = max(8, math.ceil(-capacity * math.log(fp_rate) / (_LN2 * _LN2)))
    hashes = max(1, round(bits / capacity * _LN2))
    return bits, hashes


def _base_hashes(item: str) -> tuple[int, int]:
    digest = hashlib.blake2b(item.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    # h2 odd: never 0, so the k probes do not all fall on one bit
    return int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:], "little") | 1


class BloomFilter:
    """A set of strings that may answer "maybe" for an item never added, never "no" for
    one that was."""

    __slots__ = ("_array", "bits", "capacity", "count", "fp_rate", "hashes")

    def __init__(self, capacity: int, fp_rate: float = 0.01) -> None:
        self.bits, self.hashes = optimal_size(capacity, fp_rate)
        self.capacity = capacity
        self.fp_rate = fp_rate
        self.count = 0
        """Items that set at least one new bit: distinct items, less the few that were
        already false positives when added."""
        self._array = bytearray((self.bits + 7) // 8)

    def add(self, item: str) -> bool:
        """Set the item's bits; True if one of them was clear (the item is new)."""
        h1, h2 = _base_hashes(item)
        bits, array = self.bits, self._array
        new = False
        for i in range(self.hashes):
            position = (h1 + i * h2) % bits
            mask = 1 << (position & 7)
            byte = array[position >> 3]
            if not byte & mask:
                array[position >> 3] = byte | mask
                new = True
        if new:
            self.count += 1
        return new

    def __contains__(self, item: str) -> bool:
        h1, h2 = _base_hashes(item)
        bits, array = self.bits, self._array
        for i in range(self.hashes):
            position = (h1 + i * h2) % bits
            if not array[position >> 3] & (1 << (position & 7)):
                return False
        return True

    @property
    def full(self) -> bool:
        """More items than it was sized for: its false-positive rate is now above p."""
        return self.count > self.capacity

    def fill_ratio(self) -> float:
        """The share of bits set (about ``1 - e^(-k·count/m)``; 0.5 at capacity)."""
        return sum(b.bit_count() for b in self._array) / self.bits

    def expected_fp_rate(self) -> float:
        """The false-positive rate the current fill gives: ``fill_ratio ** k``."""
        return float(self.fill_ratio() ** self.hashes)

    def __repr__(self) -> str:
        return (f"BloomFilter(capacity={self.capacity}, fp_rate={self.fp_rate}, "
                f"bits={self.bits}, hashes={self.hashes}, count={self.count})")
