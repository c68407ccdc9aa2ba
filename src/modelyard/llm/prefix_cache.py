"""KV caches of prompt prefixes, kept for the next prompt that starts the same way.

Requests to one deployment often share their start: a system prompt, a few-shot block, the
earlier turns of a conversation. After a prompt has run, the keys and values of its first
``BLOCK``-aligned tokens are kept here; a later prompt looks up the longest block-aligned
prefix it shares with a kept one and runs only the rest. Entries are dropped least recently
used first once their tensors together pass ``max_bytes``.

Each block boundary of a kept prompt is indexed by a hash chained over the blocks before it
(and over a namespace: prompts run with different LoRA adapters have different KV), so
finding the longest shared prefix costs one dictionary look-up per block; a hit is checked
token by token before it is used.

Example::

    cache = PrefixCache(max_bytes=256 << 20)
    hit = cache.lookup(prompt_ids)          # (kv, length) or None
    cache.store(prompt_ids, kv_of_prompt)   # kv: [1, heads, len(prompt_ids), dim] per layer
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelyard.llm.batch import KV

BLOCK = 16


@dataclass
class _Entry:
    tokens: tuple[int, ...]
    kv: KV
    nbytes: int
    keys: list[int]
    namespace: str = ""


def _chain(tokens: Sequence[int], limit: int, namespace: str = "") -> list[int]:
    """The chained hash at each block boundary of ``tokens[:limit]`` in ``namespace``."""
    out, h = [], hash(namespace) if namespace else 0
    for end in range(BLOCK, limit + 1, BLOCK):
        h = hash((h, tuple(tokens[end - BLOCK : end])))
        out.append(h)
    return out


class PrefixCache:
    """An LRU of prompt-prefix KV caches bounded in bytes (thread-safe)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._entries: collections.OrderedDict[int, _Entry] = collections.OrderedDict()
        self._index: dict[int, int] = {}
        self._ids = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, prompt: Sequence[int], namespace: str = "") -> tuple[KV, int] | None:
        """The KV of the longest block-aligned prefix of ``prompt`` kept in ``namespace`` that
        leaves at least one token of it to run, and that prefix's length; None if there is
        none."""
        chain = _chain(prompt, len(prompt) - 1, namespace)
        with self._lock:
            for blocks in range(len(chain), 0, -1):
                entry_id = self._index.get(chain[blocks - 1])
                if entry_id is None:
                    continue
                entry = self._entries[entry_id]
                length = blocks * BLOCK
                if entry.namespace != namespace or entry.tokens[:length] != tuple(prompt[:length]):
                    continue  # a hash collision
                self._entries.move_to_end(entry_id)
                kv = [(k[:, :, :length], v[:, :, :length]) for k, v in entry.kv]
                return kv, length
        return None

    def store(self, prompt: Sequence[int], kv: KV, namespace: str = "") -> None:
        """Keep the KV ([1, heads, ≥ len(prompt), dim] per layer, ``prompt``'s positions
        first) of ``prompt``'s block-aligned start in ``namespace``, unless it is kept
        already."""
        length = len(prompt) // BLOCK * BLOCK
        if length == 0:
            return
        chain = _chain(prompt, length, namespace)
        with self._lock:
            known = self._index.get(chain[-1], 0)  # entry ids start at 1
            entry = self._entries.get(known)
            if (
                entry is not None
                and entry.namespace == namespace
                and entry.tokens == tuple(prompt[:length])
            ):
                self._entries.move_to_end(known)
                return
        kept = [
            (k[:, :, :length].contiguous().clone(), v[:, :, :length].contiguous().clone())
            for k, v in kv
        ]
        nbytes = sum(t.numel() * t.element_size() for pair in kept for t in pair)
        if nbytes > self.max_bytes:
            return
        with self._lock:
            self._ids += 1
            entry = _Entry(tuple(prompt[:length]), kept, nbytes, chain, namespace)
            self._entries[self._ids] = entry
            for key in chain:
                self._index[key] = self._ids
            self.nbytes += nbytes
            while self.nbytes > self.max_bytes:
                self._evict()

    def _evict(self) -> None:
        entry_id, entry = self._entries.popitem(last=False)
        self.nbytes -= entry.nbytes
        for key in entry.keys:
            if self._index.get(key) == entry_id:
                del self._index[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._index.clear()
            self.nbytes = 0


__all__ = ["BLOCK", "PrefixCache"]
