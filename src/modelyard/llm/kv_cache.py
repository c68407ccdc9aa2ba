"""A KV cache for the running batch that is written in place instead of grown by copying.

transformers' ``DynamicLayer`` concatenates each step's keys and values onto the whole cache,
copying every cached position at every step. :class:`PreallocatedLayer` keeps its keys and
values in buffers with room for the next ``room`` positions: a step writes its column into
the room and hands the model a view of the filled part, so decoding copies nothing until the
room runs out (then the buffers are reallocated with fresh room, once per ``room`` steps).

This module imports torch and transformers; :mod:`modelyard.llm.batch` imports it where it
first builds a cache, so that importing the package stays light.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

ROOM = 128
"""Positions a layer keeps free past its filled part (its buffers grow by this much)."""


class PreallocatedLayer(DynamicLayer):  # type: ignore[no-untyped-call]
    """One layer's keys and values ([batch, heads, positions, dim]) in buffers with room."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, room: int = ROOM) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.room = room
        self.device = keys.device
        self.is_initialized = True
        self._length = 0
        self._key_buffer = self._allocate(keys, keys.shape[-2])
        self._value_buffer = self._allocate(values, values.shape[-2])
        self._write(keys, values)

    def _allocate(self, like: torch.Tensor, needed: int) -> torch.Tensor:
        return like.new_empty((*like.shape[:-2], needed + self.room, like.shape[-1]))

    def _write(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        end = self._length + keys.shape[-2]
        self._key_buffer[:, :, self._length : end] = keys
        self._value_buffer[:, :, self._length : end] = values
        self._length = end
        filled = self._key_buffer[:, :, :end], self._value_buffer[:, :, :end]
        self.keys, self.values = filled
        return filled

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new positions after the filled ones; return keys and values so far."""
        if self._length + key_states.shape[-2] > self._key_buffer.shape[-2]:
            needed = self._length + key_states.shape[-2]
            keys, values = self._key_buffer, self._value_buffer
            self._key_buffer = self._allocate(keys, needed)
            self._value_buffer = self._allocate(values, needed)
            self._key_buffer[:, :, : self._length] = keys[:, :, : self._length]
            self._value_buffer[:, :, : self._length] = values[:, :, : self._length]
        return self._write(key_states, value_states)


def preallocated_cache(
    kv: list[tuple[torch.Tensor, torch.Tensor]], config: Any, room: int = ROOM
) -> Any:
    """A ``DynamicCache`` holding a copy of ``kv`` in :class:`PreallocatedLayer` s.

    Models whose layers are not all plain full-attention layers (sliding windows, linear
    attention) get the cache transformers would build, filled with ``kv``.
    """
    cache = DynamicCache(config=config)
    if len(cache.layers) == len(kv) and all(type(layer) is DynamicLayer for layer in cache.layers):
        cache.layers[:] = [PreallocatedLayer(k, v, room) for k, v in kv]
        return cache
    return DynamicCache(ddp_cache_data=kv, config=config)


__all__ = ["ROOM", "PreallocatedLayer", "preallocated_cache"]
