"""Constrained generation with Hugging Face transformers: only valid documents are sampled.

    import tct, tct.hf
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained("hf/tiny")        # python -m trainer.export
    tok = tct.Tokenizer.from_file("hf/tiny/tct_tokenizer.json")
    bos = torch.tensor([[tok.bos_id]] * 4)                          # 4 samples from scratch
    out = model.generate(bos, do_sample=True, max_new_tokens=256,
                         logits_processor=[tct.hf.TctLogitsProcessor(tok, max_tokens=256)])
    docs = [tct.hf.decode(tok, row) for row in out]                  # JSON text, valid

transformers is imported by nothing here: the processor is a plain callable with the
`LogitsProcessor` signature, so `import tct.hf` works without it (the `[hf]` extra installs it).

How rows are followed. transformers calls the processor once per step with every row's ids so
far. The first call (or one whose length is not the previous plus one) starts a matcher per row
and feeds it the row's prompt; each later call advances each row's matcher by its newest id. A
row whose ids so far are not the previous row's plus one (beam search reorders and duplicates
beams) takes a copy of the matcher of the row it continues, found by comparing prefixes, so beam
search is constrained too. A row that already ended (EOS; transformers pads it afterwards) may
only take PAD, EOS, so its distribution stays defined. A row that took a forbidden id is dead
and gets the same mask: beam search keeps candidates of score -inf as running beams when fewer
ids are allowed than it has beams, and such a beam can never win.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from . import DecodeError, Matcher, Tokenizer


class TctLogitsProcessor:
    """Masks the logits of `model.generate` to the ids the tokenizer's matcher allows.

    `max_tokens`: the most ids a row may draw after its prompt, EOS included; with it, ids after
    which the smallest valid completion (plus EOS) no longer fits are forbidden as well, so a
    sample ends by EOS within `max_tokens` whenever a valid document fits (set the same or a larger
    `max_new_tokens`). `None`: no bound from the processor.
    """

    def __init__(self, tokenizer: Tokenizer, max_tokens: int | None = None) -> None:
        if max_tokens is not None and (isinstance(max_tokens, bool) or max_tokens < 1):
            raise ValueError(f"max_tokens must be a positive int or None, got {max_tokens!r}")
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self._prev: np.ndarray | None = None  # (B, L) ids seen at the previous call
        self._matchers: list[Matcher | None] = []  # None: a dead row (see the module docs)
        self._mask: np.ndarray | None = None

    # transformers' LogitsProcessor signature: (input_ids (B, L) long, scores (B, V) float).
    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        ids = input_ids.detach().cpu().numpy().astype(np.int64, copy=False)
        if self._prev is None or ids.shape[1] != self._prev.shape[1] + 1:
            self._matchers = [self._start(row, r) for r, row in enumerate(ids)]
        else:
            self._matchers = self._follow(ids)
        self._prev = ids
        V_tok = self.tokenizer.vocab_size
        B, V = scores.shape
        if V < V_tok:
            raise ValueError(f"the model scores {V} ids, the tokenizer has {V_tok}")
        if self._mask is None or self._mask.shape[0] != B:
            self._mask = np.zeros((B, V_tok), dtype=np.bool_)
        for r, m in enumerate(self._matchers):
            if m is None or m.is_terminated():
                self._mask[r] = False
                self._mask[r, [self.tokenizer.pad_id, self.tokenizer.eos_id]] = True
            else:
                m.allowed_into(self._mask[r])
        allowed = torch.zeros((B, V), dtype=torch.bool, device=scores.device)
        allowed[:, :V_tok] = torch.from_numpy(self._mask).to(scores.device)
        return scores.masked_fill(~allowed, float("-inf"))

    def _start(self, row: np.ndarray, r: int) -> Matcher:
        """A matcher fed row r's prompt: left padding and a leading position id are skipped, BOS
        is accepted by the matcher itself."""
        tok = self.tokenizer
        m = tok.matcher()
        i = 0
        while i < len(row) and (row[i] == tok.pad_id or row[i] >= tok.vocab_size):
            i += 1
        for pos in range(i, len(row)):
            try:
                m.advance(int(row[pos]))
            except DecodeError as e:
                raise ValueError(
                    f"row {r}: prompt id {int(row[pos])} at position {pos} is not a valid "
                    f"document prefix for tokenizer {tok.name!r}: {e}"
                ) from e
        if self.max_tokens is not None:
            m.set_budget(self.max_tokens)
        return m

    def _follow(self, ids: np.ndarray) -> list[Matcher | None]:
        assert self._prev is not None
        prev, olds = self._prev, self._matchers
        taken = [False] * len(olds)
        out = []
        for r in range(ids.shape[0]):
            head = ids[r, :-1]
            if r < len(olds) and np.array_equal(prev[r], head):
                j = r
            else:
                hits = np.flatnonzero((prev == head).all(axis=1))
                if not len(hits):
                    raise ValueError(
                        f"row {r}: its ids are not the continuation of any row of the previous "
                        "step; use one TctLogitsProcessor per generate() call"
                    )
                j = int(hits[0])
            m = olds[j]
            if m is not None and taken[j]:
                m = m.fork()
            taken[j] = True
            if m is not None and not m.is_terminated() and not m.accept_token(int(ids[r, -1])):
                m = None
            out.append(m)
        return out


def decode(tokenizer: Tokenizer, ids: Iterable[int] | Sequence[int] | Any) -> str:
    """The JSON text of one generated row: padding, a leading position id and everything from EOS
    on are dropped; a row cut short by `max_new_tokens` is closed by the smallest valid
    completion (`Matcher.document(complete=True)`)."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    m = tokenizer.matcher()
    for t in ids:
        t = int(t)
        if t == tokenizer.eos_id:
            break
        if t == tokenizer.pad_id or t >= tokenizer.vocab_size:
            continue
        m.advance(t)
    return m.document(True)
