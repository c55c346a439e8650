"""LSNs unique across every process that shares one Redis, at one round trip per block.

A process takes a *block* of `block` consecutive numbers with one atomic INCRBY on one
key (``re:lsn``) and hands them out locally: with blocks of 1000 an LSN costs a
thousandth of a round trip. LSNs therefore increase within a process and are unique
across processes, but they are not arrival order *across* processes (process A may
still be using block 1–1000 while B uses 1001–2000), and a process that stops leaves
the rest of its block unused (gaps). Where one global order is needed, it is the order of
the decision log, or one process.

The counter lives in Redis: it survives a restart with persistence (AOF / RDB). If
Redis comes back empty, a process never goes back below the end of the last block it
took (the script raises the counter to that floor), but blocks other processes had
taken before the loss may be handed out again.
"""

from __future__ import annotations

from typing import Any

from riskengine.state.redis.codec import RedisStateError

DEFAULT_BLOCK = 1000

_TAKE = """
local n = tonumber(ARGV[1])
local floor = tonumber(ARGV[2])
local v = redis.call('INCRBY', KEYS[1], n)
if v < floor + n then
  v = floor + n
  redis.call('SET', KEYS[1], string.format('%.0f', v))
end
return v
"""


class LsnBlocks:
    """Hands out LSNs from blocks taken with `client` (`redis.Redis` or `RedisCluster`).

    `take()` returns the next LSN, and costs a round trip when the block is used up
    (raising the client's error if Redis cannot be reached: nothing is consumed then).
    """

    def __init__(self, client: Any, *, key: str = "re:lsn", block: int = DEFAULT_BLOCK
                 ) -> None:
        if type(block) is not int or block < 1:
            raise RedisStateError(f"the LSN block size must be a positive integer, not "
                                  f"{block!r}")
        self.key = key
        self.block = block
        self._script = client.register_script(_TAKE)
        self._next = 1
        self._end = 0  # the last number of the block in hand (0: none yet)
        self.last = 0
        """The LSN handed out last (0: none yet)."""
        self.blocks = 0
        """How many blocks this process has taken."""

    def take(self) -> int:
        if self._next > self._end:
            self._refill()
        lsn = self._next
        self._next = lsn + 1
        self.last = lsn
        return lsn

    def _refill(self) -> None:
        end = int(self._script(keys=[self.key], args=[self.block, self._end]))
        self._next = end - self.block + 1
        self._end = end
        self.blocks += 1
