"""Key/value caches lume builds itself, on transformers' cache classes.

`ReservedLayer`: one buffer per layer sized for a whole generation, filled in place (the
default cache concatenates: a full copy per token). `broadcast_prefix`: a prefix computed once
and shared, as views, by every row of a batch.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import Cache

from lume.compat import DynamicLayer


class ReservedLayer(DynamicLayer):
    """One layer's keys and values in a buffer sized for the whole generation.

    Decoding writes each new position in place. Positions left of a row's prompt stay zero
    and are masked.
    """

    def __init__(self, rows: int, like: torch.Tensor, capacity: int):
        super().__init__()
        self.key_buffer = like.new_zeros(rows, like.shape[1], capacity, like.shape[3])
        self.value_buffer = torch.zeros_like(self.key_buffer)
        self.device, self.length = like.device, 0

    def place(self, first_row: int, keys: torch.Tensor, values: torch.Tensor, end: int) -> None:
        """Copy a prefilled group of rows in, right-aligned to position `end`."""
        rows, width = slice(first_row, first_row + keys.shape[0]), slice(end - keys.shape[2], end)
        self.key_buffer[rows, :, width] = keys
        self.value_buffer[rows, :, width] = values
        self._view(end)

    def _view(self, length: int) -> None:
        self.length = length
        self.keys, self.values = self.key_buffer[:, :, :length], self.value_buffer[:, :, :length]
        self.is_initialized = True

    def update(self, key_states, value_states, *args, **kwargs):
        end = self.length + key_states.shape[2]
        self.key_buffer[:, :, self.length:end] = key_states
        self.value_buffer[:, :, self.length:end] = value_states
        self._view(end)
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.key_buffer, self.value_buffer = self.key_buffer[indices], self.value_buffer[indices]
        self._view(self.length)


def reserved_cache(prefilled: list[tuple[int, DynamicCache]], rows: int, width: int, capacity: int) -> Cache:
    """One reserved cache for `rows` rows from caches prefilled in groups ((first row, cache)),
    each group right-aligned to position `width`."""
    layers = [ReservedLayer(rows, layer.keys, capacity) for layer in prefilled[0][1].layers]
    for first, group_cache in prefilled:
        for layer, group_layer in zip(layers, group_cache.layers):
            layer.place(first, group_layer.keys, group_layer.values, width)
    return Cache(layers=layers)


def broadcast_prefix(prefix: DynamicCache | None, rows: int) -> Cache:
    """A cache whose every row starts from `prefix` (broadcast views, copied once when the
    rows' own tokens are appended); an empty cache without a prefix."""
    if prefix is None:
        return DynamicCache()
    layers = []
    for prefix_layer in prefix.layers:
        layer = DynamicLayer()
        layer.lazy_initialization(prefix_layer.keys, prefix_layer.values)
        layer.keys = prefix_layer.keys.expand(rows, -1, -1, -1)
        layer.values = prefix_layer.values.expand(rows, -1, -1, -1)
        layers.append(layer)
    return Cache(layers=layers)
