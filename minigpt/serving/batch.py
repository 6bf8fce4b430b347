"""One KV cache for the rows of a running batch, which join, slide and leave between steps.

Row i's context window fills the cache's slots [pads[i], length): rows are right-aligned and
left-padded, and the model counts a row's positions from its first real slot and never attends to
its padding (GPT.forward's `pads`), so every row gets the logits it would get alone. A step adds
one slot to every row. A row that joins brings a cache of its own, prefilled alone, and is copied
in right-aligned; when it is longer than the batch's, the batch moves right to make room. When
the slots run out, every row moves left by the padding they all have. Moving a row changes
nothing it computes: a cached key depends on the row's position (slot - pad), not on the slot.
"""

from __future__ import annotations

import torch

from minigpt.model import GPT, KVCache, LayerCache


class BatchCache:
    """Preallocated keys and values for up to `capacity` rows of a GPT, `context` slots each (at
    most its block_size)."""

    def __init__(self, model: GPT, capacity: int, context: int | None = None) -> None:
        config = model.config
        assert config.block_size is not None  # a GPT's config has its sizes
        weight = model.transformer.wte.weight
        context = config.block_size if context is None else min(context, config.block_size)
        shape = (capacity, config.kv_heads, context, config.head_width)
        # Zeros, not empty: padding slots are masked out, but a NaN there would still reach the
        # attention's weighted sum (0 * NaN is NaN).
        self.keys = [weight.new_zeros(shape) for _ in range(config.n_layer)]
        self.values = [weight.new_zeros(shape) for _ in range(config.n_layer)]
        self.block_size = context
        self.pads: list[int] = []
        self.length = 0

    @property
    def rows(self) -> int:
        return len(self.pads)

    def window(self, row: int) -> int:
        """Tokens of row `row` in the cache."""
        return self.length - self.pads[row]

    def step_inputs(self) -> tuple[KVCache, torch.Tensor | None]:
        """The cache the model extends by one slot per row, and the rows' padding (None when no
        row has any, so the model takes its unmasked path, the one generation of one row takes)."""
        layers = []
        for keys, values in zip(self.keys, self.values, strict=True):
            layer = LayerCache(keys[: self.rows], values[: self.rows])
            layer.length = self.length
            layers.append(layer)
        pads = torch.tensor(self.pads, device=self.keys[0].device) if any(self.pads) else None
        return KVCache(layers), pads

    def advance(self) -> None:
        """Count the slot the last step wrote."""
        self.length += 1

    def make_room(self) -> None:
        """Free a slot for the next step by moving every row left by the padding all rows have."""
        if self.rows and self.length >= self.block_size:
            shift = min(self.pads)
            if shift == 0:
                raise RuntimeError("a row fills the whole context; it should have slid")
            self._move(-shift)

    def add(self, cache: KVCache) -> None:
        """Take in the rows of a cache prefilled on its own (rows of one length), right-aligned."""
        filled, count = cache.length, cache.layers[0].keys.size(0)
        if filled > self.length:
            self._move(filled - self.length)
        start, end = self.length - filled, self.length
        for mine, theirs in zip(self.keys, (layer.keys for layer in cache.layers), strict=True):
            mine[self.rows : self.rows + count, :, start:end] = theirs[:, :, :filled]
        for mine, theirs in zip(self.values, (layer.values for layer in cache.layers), strict=True):
            mine[self.rows : self.rows + count, :, start:end] = theirs[:, :, :filled]
        self.pads += [start] * count

    def remove(self, row: int) -> None:
        """Drop row `row`; the last row takes its place (callers renumber it)."""
        last = self.rows - 1
        if row != last:
            for tensor in (*self.keys, *self.values):
                tensor[row, :, : self.length] = tensor[last, :, : self.length]
            self.pads[row] = self.pads[last]
        self.pads.pop()
        if not self.pads:
            self.length = 0

    def _move(self, offset: int) -> None:
        """Move every row's slots by `offset` (right when positive), padding along."""
        rows, length = self.rows, self.length
        if rows:
            for tensor in (*self.keys, *self.values):
                if offset > 0:
                    tensor[:rows, :, offset : offset + length] = tensor[:rows, :, :length].clone()
                else:
                    tensor[:rows, :, : length + offset] = tensor[:rows, :, -offset:length].clone()
        self.pads = [pad + offset for pad in self.pads]
        self.length = length + offset
