"""Export a trainer checkpoint to the Hugging Face format, loadable without remote code.

    python -m trainer.export --checkpoint runs/tiny --out hf/tiny
    python -c "from transformers import AutoModelForCausalLM; \
m = AutoModelForCausalLM.from_pretrained('hf/tiny')"

The directory holds `model.safetensors`, `config.json` (transformers' NanoChat architecture),
`generation_config.json` (BOS, EOS, PAD of the tokenizer), and `tct_tokenizer.json`, the TCT
tokenizer file (`tct.Tokenizer.from_file`) that `tct.hf.TctLogitsProcessor` needs to constrain
`model.generate(...)` to valid documents.

The mapping is exact, not approximate (the test compares fp32 logits, max abs difference <= 1e-4):
- Our RMSNorms before attention, MLP and head have learned gains; NanoChat's have none. A gain g
  in front of a matmul W is folded into it (W diag(g)), which is the same function.
- NanoChat normalises the embeddings with a parameter-free RMSNorm: ours does the same when
  `GPTConfig.embed_norm` is set (the default since the exporter exists). Older checkpoints were
  trained without it and are refused.
- Rotary embeddings: both turn the pair (x_i, x_{i+hd/2}) by the same angle (NanoChat's
  `rotate_half` is (x2, -x1), the sign convention nanochat itself uses), so the q, k projections
  are copied as they are.
- NanoChat applies QK-norm after the rotation, ours before: a rotation preserves the RMS, so it
  is the same. A model without QK-norm (`qk_norm=False`) has no NanoChat equivalent: refused.
- No logit soft-capping (NanoChat's `final_logit_softcapping` is set to None); untied output
  head (a tied head would stop being tied once the final gain is folded into it).

The `embed_norm` change does not hurt training: the measurement is recorded beside it in
model.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from .checkpoint import CheckpointError
from .generate import load_model
from .model import GPT

TOKENIZER_FILE = "tct_tokenizer.json"


class ExportError(ValueError):
    """The checkpoint cannot be expressed as a transformers model; the message says why."""


def hf_config(model: GPT, bos_id: int, eos_id: int, pad_id: int) -> dict[str, Any]:
    """config.json for transformers' NanoChatForCausalLM."""
    c = model.config
    if not c.qk_norm:
        raise ExportError("qk_norm=False: transformers' NanoChat always applies QK-norm")
    if not c.embed_norm:
        raise ExportError(
            "embed_norm=False (a checkpoint from before the embedding norm): transformers' "
            "NanoChat normalises the embeddings, so this model has no exact equivalent there"
        )
    return {
        "architectures": ["NanoChatForCausalLM"],
        "model_type": "nanochat",
        "vocab_size": c.vocab_size,
        "hidden_size": c.n_embd,
        "intermediate_size": c.mlp_ratio * c.n_embd,
        "num_hidden_layers": c.n_layer,
        "num_attention_heads": c.n_head,
        "num_key_value_heads": c.n_head,
        "head_dim": c.n_embd // c.n_head,
        "max_position_embeddings": c.sequence_len,
        "hidden_act": c.activation,  # "relu2" or "gelu" (exact erf GELU, as F.gelu)
        "rms_norm_eps": c.norm_eps,
        "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_base},
        "final_logit_softcapping": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "tie_word_embeddings": False,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "torch_dtype": "float32",
    }


def hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """Our weights under NanoChat's names, norm gains folded into the matmuls after them."""
    c = model.config
    C = c.n_embd
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    out: dict[str, torch.Tensor] = {"model.embed_tokens.weight": sd["wte.weight"].clone()}
    for i in range(c.n_layer):
        p, q = f"blocks.{i}.", f"model.layers.{i}."
        g1 = sd[p + "norm1.weight"][None, :]  # (1, C): scales the columns (inputs)
        wq, wk, wv = (w * g1 for w in sd[p + "attn.c_attn.weight"].split(C, dim=0))
        out[q + "self_attn.q_proj.weight"] = wq.contiguous()
        out[q + "self_attn.k_proj.weight"] = wk.contiguous()
        out[q + "self_attn.v_proj.weight"] = wv.contiguous()
        out[q + "self_attn.o_proj.weight"] = sd[p + "attn.c_proj.weight"].clone()
        g2 = sd[p + "norm2.weight"][None, :]
        out[q + "mlp.fc1.weight"] = (sd[p + "mlp.c_fc.weight"] * g2).contiguous()
        out[q + "mlp.fc2.weight"] = sd[p + "mlp.c_proj.weight"].clone()
    out["lm_head.weight"] = (sd["lm_head.weight"] * sd["norm_f.weight"][None, :]).contiguous()
    return out


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def export(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Write the Hugging Face directory `out` for `checkpoint` (a run directory or model file).
    The directory is assembled beside `out` and renamed into place, so a failure leaves no
    half-written export."""
    from safetensors.torch import save_file

    lm = load_model(checkpoint, device="cpu", dtype="float32")
    tok = lm.tokenizer
    config = hf_config(lm.model, tok.bos_id, tok.eos_id, tok.pad_id)
    state = hf_state_dict(lm.model)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out}: exists and is not an empty directory")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        _write_json(tmp / "config.json", config)
        _write_json(
            tmp / "generation_config.json",
            {
                "bos_token_id": tok.bos_id,
                "eos_token_id": tok.eos_id,
                "pad_token_id": tok.pad_id,
                "max_length": lm.model.config.sequence_len,
            },
        )
        tok.save(tmp / TOKENIZER_FILE)
        _write_json(
            tmp / "tct_export.json",
            {
                "source_checkpoint": str(lm.model_path),
                "tokenizer": {"name": tok.name, "hash": tok.hash, "file": TOKENIZER_FILE},
                "start_ids": lm.start_ids,
            },
        )
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m trainer.export",
        description="Write a checkpoint as a transformers model directory (NanoChat architecture).",
    )
    p.add_argument(
        "--checkpoint", required=True, help="run directory (latest checkpoint) or model_NNNNNN.pt"
    )
    p.add_argument("--out", required=True, help="directory to create (absent or empty)")
    args = p.parse_args(argv)
    try:
        path = export(args.checkpoint, args.out)
    except (CheckpointError, ExportError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path} (load with transformers.AutoModelForCausalLM.from_pretrained)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
