"""The keys and values of past tokens, so that generating one token costs one token's forward pass.

    cache = KVCache(model.config, batch_size=64, device=device, dtype=torch.float32)
    logits = model(prompt_ids, cache=cache)      # (B, P, V): fills positions 0..P-1
    logits = model(next_ids[:, None], cache=cache)   # (B, 1, V): one new position
    cache.keep(rows)                             # drop finished sequences from the batch

Layout: one buffer per layer, (B, H, capacity, hd), for keys and for values. Keys are stored
*after* the rotary embedding, at their absolute positions, so attention scores depend only on the
distance between a query and a key (RoPE's property) and the cache never has to be re-rotated.

A sliding window. The capacity is the model's training context (`sequence_len`). When a new
token would not fit, the oldest quarter of the window is dropped (one copy per capacity/4 tokens,
not one per token), so every query still sees at least the last 3/4 of a context of keys, at
relative distances the model was trained on. Positions keep counting (`pos`), and the model extends
its rotary tables as needed. This is what lets a sample run past the training context, as training
does with continuation windows inside long documents.

All sequences in a batch advance in lockstep (same length, same positions): generation feeds every
row one token per step, and `keep` removes rows rather than leaving holes.
"""

from __future__ import annotations

import torch

from .model import GPTConfig


class KVCache:
    def __init__(
        self,
        cfg: GPTConfig,
        batch_size: int,
        device: torch.device | str,
        dtype: torch.dtype = torch.float32,
        capacity: int | None = None,
    ) -> None:
        self.capacity = capacity or cfg.sequence_len
        if self.capacity < 4:
            raise ValueError(f"KV cache capacity {self.capacity} is too small (need >= 4)")
        head_dim = cfg.n_embd // cfg.n_head
        shape = (batch_size, cfg.n_head, self.capacity, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.length = 0  # valid entries in each buffer
        self.pos = 0  # absolute position of the next token (for RoPE)

    @property
    def batch_size(self) -> int:
        return self.k[0].size(0)

    def make_room(self, T: int) -> None:
        """Before a forward pass of T new tokens: slide the window if they would not fit."""
        if T > self.capacity:
            raise ValueError(f"{T} tokens at once exceed the KV cache capacity {self.capacity}")
        if self.length + T <= self.capacity:
            return
        keep = min(self.length, self.capacity - T, self.capacity * 3 // 4)
        drop = self.length - keep
        for buf in self.k + self.v:
            # clone: source and destination overlap.
            buf[:, :, :keep] = buf[:, :, drop : self.length].clone()
        self.length = keep

    def append(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Store this layer's new k, v (B, H, T, hd); return every cached key and value
        (B, H, L, hd), L = length + T, and the attention mask for the T queries (None: each query
        may see every key, which is the case for one query at the end)."""
        T = k.size(2)
        start = self.length
        self.k[layer][:, :, start : start + T] = k
        self.v[layer][:, :, start : start + T] = v
        keys = self.k[layer][:, :, : start + T]
        values = self.v[layer][:, :, : start + T]
        if T == 1:
            return keys, values, None
        # Query i sits at slot start + i and may see slots 0..start + i.
        slots = torch.arange(start + T, device=k.device)
        mask = slots[None, :] <= (start + torch.arange(T, device=k.device))[:, None]  # (T, L)
        return keys, values, mask

    def advance(self, T: int) -> None:
        """After every layer has appended: the T new tokens are now part of the cache."""
        self.length += T
        self.pos += T

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only these batch rows (int64 indices, in the order given)."""
        self.k = [buf.index_select(0, rows) for buf in self.k]
        self.v = [buf.index_select(0, rows) for buf in self.v]
