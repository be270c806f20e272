"""A small modern GPT, readable top to bottom (nanoGPT / nanochat shape).

    token ids (B, T)
      -> token embedding, rmsnorm (no gain)   (B, T, d)
      -> n_layer x Block:
             x = x + attn(rmsnorm(x))         causal self-attention, RoPE, QK-norm, SDPA
             x = x + mlp(rmsnorm(x))          d -> 4d -> d, ReLU^2 (or GELU)
      -> rmsnorm -> lm_head                   (B, T, vocab_size) logits

Choices, and why:
- No biases, RMSNorm, rotary position embeddings (no learned position table, so the context length
  is a buffer size, not a parameter) and QK-norm (stable attention logits at higher learning rates):
  the nanochat recipe, which trains faster per FLOP than GPT-2's.
- ReLU^2 by default: as good as GELU at this size and cheaper; `activation="gelu"` is there.
- Untied input and output embeddings by default. In a TCT stream the two roles differ: position ids
  (`--window-format position`) are only ever inputs, and the output side must rank thousands of
  schema-constrained choices. It also reproduces the proof of concept's 20.4M parameters for the
  `small` preset (384 d x 8 layers, vocabulary 8192); `tie_embeddings=True` saves V x d parameters.
- A parameter-free RMSNorm right after the embedding (`embed_norm`, nanochat's choice): it makes
  the model exactly transformers' NanoChat architecture, so `python -m trainer.export` writes a
  checkpoint that `AutoModelForCausalLM` loads without remote code (export.py maps the learned
  norm gains into the following matmuls). Checkpoints written before the field existed load with
  `embed_norm=False` (`GPTConfig.from_dict`) and cannot be exported. Measured on the 2-core dev
  VM (tiny preset, context 128, batch 8, lr 3e-3, 300 steps, seed 0, 2,000 workflows encoded
  with the bundled tokenizer, 10% held out): val loss 3.226 nats with the norm, 3.532 without
  (train loss 2.32 vs 2.61); one seed, so read it as "does not hurt", not as a gain.
- F.scaled_dot_product_attention with is_causal=True: flash attention on GPU, a fused kernel on CPU.

Quick check on CPU (about 1M parameters):

    PYTHONPATH=python python -c "import torch; from trainer.model import GPT, GPTConfig; \
m = GPT(GPTConfig(vocab_size=260, sequence_len=64, n_layer=4, n_head=4, n_embd=128)); \
x = torch.randint(0, 260, (2, 64)); print(m.num_params(), m(x, x).item())"
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

if TYPE_CHECKING:
    from .kv_cache import KVCache


@dataclass
class GPTConfig:
    vocab_size: int = 8192  # set from the shard metadata by the trainer
    sequence_len: int = 1024  # longest input the rotary tables cover (the training context)
    n_layer: int = 8
    n_head: int = 6
    n_embd: int = 384
    mlp_ratio: int = 4  # hidden width of the MLP is mlp_ratio * n_embd
    activation: str = "relu2"  # "relu2" or "gelu"
    tie_embeddings: bool = False
    qk_norm: bool = True
    rope_base: float = 10000.0
    norm_eps: float = 1e-6
    embed_norm: bool = True  # RMSNorm (no gain) on the embeddings, as in nanochat

    @classmethod
    def from_dict(cls, d: dict) -> GPTConfig:
        """The config saved in a checkpoint's meta. Checkpoints from before `embed_norm` existed
        were trained without that norm, so a missing key means False, not the new default."""
        return cls(**{"embed_norm": False, **d})

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if (self.n_embd // self.n_head) % 2:
            raise ValueError(f"head size {self.n_embd // self.n_head} must be even for RoPE")
        if self.activation not in ("relu2", "gelu"):
            raise ValueError(f"activation {self.activation!r}: expected 'relu2' or 'gelu'")
        for name in ("vocab_size", "sequence_len", "n_layer", "n_head", "n_embd", "mlp_ratio"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    if hasattr(F, "rms_norm"):  # torch >= 2.4: one fused op
        return F.rms_norm(x, (x.size(-1),), weight, eps)
    y = x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps).type_as(x)
    return y * weight if weight is not None else y


class RMSNorm(nn.Module):
    """RMSNorm with a learned gain (ones at init)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


def rotary_tables(head_dim: int, max_len: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (1, 1, max_len, head_dim // 2), float32."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)  # (T, hd/2)
    return angles.cos()[None, None], angles.sin()[None, None]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[..., i], x[..., i + hd/2]) by position-dependent angles. x: (B, H, T, hd)."""
    x1, x2 = x.chunk(2, dim=-1)  # (B, H, T, hd/2) each
    y1 = x1 * cos + x2 * sin
    y2 = x2 * cos - x1 * sin
    return torch.cat([y1, y2], dim=-1).type_as(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.head_dim = cfg.n_embd // cfg.n_head
        self.qk_norm = cfg.qk_norm
        self.eps = cfg.norm_eps
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)  # q, k, v in one matmul
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # (B, T, C) each
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = k.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        v = v.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        if self.qk_norm:
            # Parameter-free, so it commutes with the rotation below (RoPE preserves norms).
            q, k = rms_norm(q, None, self.eps), rms_norm(k, None, self.eps)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        # If autocast runs the norm in float32, SDPA would see mixed dtypes; match v (no-op else).
        q, k = q.type_as(v), k.type_as(v)
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, hd)
        else:  # generation: attend to the cached past as well (keys (B, H, L, hd), L >= T)
            k, v, mask = cache.append(layer, k, v)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, T, hd)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        hidden = cfg.mlp_ratio * cfg.n_embd
        self.relu2 = cfg.activation == "relu2"
        self.c_fc = nn.Linear(cfg.n_embd, hidden, bias=False)
        self.c_proj = nn.Linear(hidden, cfg.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)  # (B, T, 4d)
        h = F.relu(h).square() if self.relu2 else F.gelu(h)
        return self.c_proj(h)  # (B, T, d)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.norm1 = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.attn = CausalSelfAttention(cfg)
        self.norm2 = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cos, sin, cache, layer)
        x = x + self.mlp(self.norm2(x))
        return x


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm_f = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        # Not persistent: rebuilt from the config, so checkpoints hold only learned weights.
        cos, sin = rotary_tables(cfg.n_embd // cfg.n_head, cfg.sequence_len, cfg.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 init: N(0, 0.02), with residual output projections scaled by 1/sqrt(2 n_layer) so
        the residual stream's variance does not grow with depth."""
        proj_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, p in self.named_parameters():
            if (
                name.endswith("norm1.weight")
                or name.endswith("norm2.weight")
                or name == "norm_f.weight"
            ):
                nn.init.ones_(p)
            elif name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=proj_std)
            else:
                nn.init.normal_(p, mean=0.0, std=0.02)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        reduction: str = "mean",
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """idx: (B, T) int64 ids. Without targets: logits (B, T, vocab_size). With targets (B, T),
        where -1 marks a position that is not scored: the cross-entropy in nats, averaged over scored
        positions (reduction="mean") or summed (reduction="sum", used for exact bits per byte).

        With a KV cache (generation, kv_cache.py), idx holds only the new tokens: they sit at
        positions cache.pos.. and attend to the cached past, and the cache then holds them too."""
        B, T = idx.shape
        start = 0
        if cache is not None:
            cache.make_room(T)
            start = cache.pos
        elif T > self.config.sequence_len:
            raise ValueError(f"input length {T} exceeds sequence_len {self.config.sequence_len}")
        cos, sin = self.rotary(start, T)  # (1, 1, T, hd/2)
        x = self.wte(idx)  # (B, T, d)
        if self.config.embed_norm:
            x = rms_norm(x, None, self.config.norm_eps)
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, cache, i)  # (B, T, d)
        if cache is not None:
            cache.advance(T)
        logits = self.lm_head(self.norm_f(x))  # (B, T, V)
        if targets is None:
            return logits
        # Cross-entropy runs in float32 even under bf16 autocast (autocast's fp32 op list).
        return F.cross_entropy(
            logits.view(B * T, -1), targets.reshape(B * T), ignore_index=-1, reduction=reduction
        )

    def rotary(self, start: int, T: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin for positions start..start+T-1. Past the tables (a KV cache sliding beyond
        the training context) they are rebuilt twice as long, once per doubling."""
        if start + T > self.rope_cos.size(2):
            cos, sin = rotary_tables(
                self.config.n_embd // self.config.n_head, 2 * (start + T), self.config.rope_base
            )
            self.rope_cos = cos.to(self.rope_cos.device)
            self.rope_sin = sin.to(self.rope_sin.device)
        return self.rope_cos[:, :, start : start + T], self.rope_sin[:, :, start : start + T]

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count (shared tensors once). non_embedding drops the input embedding table,
        which is a lookup, not a matmul; the output head stays (a tied table is kept: it is the
        head's matmul weight too)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and not self.config.tie_embeddings:
            n -= self.wte.weight.numel()
        return n

    def flops_per_token(self) -> float:
        """Training FLOPs per token, forward + backward: 6 per matmul weight plus attention scores,
        12 * n_layer * d * T (the PaLM / nanoGPT estimate; causal masking is not discounted)."""
        c = self.config
        matmul_weights = self.num_params(non_embedding=True) - sum(
            p.numel() for n, p in self.named_parameters() if n.endswith("weight") and p.dim() == 1
        )
        return 6.0 * matmul_weights + 12.0 * c.n_layer * c.n_embd * c.sequence_len

    def param_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: decay the matmul weights; do not decay norm gains (they set a scale, and
        pulling them to 0 fights the normalisation) nor the embedding table (rare tokens get few
        gradients, so decay would erase them between uses)."""
        decay, no_decay = [], []
        seen: set[int] = set()
        for name, p in self.named_parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            is_matmul = p.dim() == 2 and name != "wte.weight"
            (decay if is_matmul else no_decay).append(p)
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
