"""Named model sizes with matching training defaults. Flags override any field.

| preset | shape (d x layers x heads) | parameters, vocab 8192 untied: all (without input embedding) | context | batch | lr |
| --- | --- | --- | --- | --- | --- |
| tiny   | 128 x 4 x 4   | 2.88M (1.84M)                              | 256  | 8  | 1e-3 |
| small  | 384 x 8 x 6   | 20.45M (17.31M), the proof-of-concept model | 512  | 32 | 3e-4 |
| medium | 768 x 12 x 12 | 97.54M (91.25M)                            | 1024 | 32 | 3e-4 |

Parameter counts, here, in the README and in the trainer's log, count every tensor once
(`GPT.num_params()`); the figure in brackets drops the input embedding table, a lookup rather
than a matmul (`num_params(non_embedding=True)`).

`tiny` is for CPU tests and laptops; its eval budget is small so that evaluation does not dominate.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "model": {"n_embd": 128, "n_layer": 4, "n_head": 4, "sequence_len": 256},
        "train": {
            "batch_size": 8,
            "learning_rate": 1e-3,
            "eval_every": 50,
            "eval_tokens": 1 << 15,
            "log_every": 10,
            "save_every": 100,
        },
    },
    "small": {
        "model": {"n_embd": 384, "n_layer": 8, "n_head": 6, "sequence_len": 512},
        "train": {"batch_size": 32, "learning_rate": 3e-4},
    },
    "medium": {
        "model": {"n_embd": 768, "n_layer": 12, "n_head": 12, "sequence_len": 1024},
        "train": {"batch_size": 32, "learning_rate": 3e-4},
    },
}
