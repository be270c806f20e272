"""A thin PyTorch GPT trainer for TCT token shards: `python -m trainer.train --help`.

- model.py: GPT and GPTConfig; presets.py: tiny / small / medium
- data.py: memory-mapped shards -> BOS-aligned windows -> batches
- train.py: the training loop (schedule.py, checkpoint.py, validation_loss.py, metrics.py, progress.py,
  distributed.py are its parts, one concern each)
"""

from .model import GPT, GPTConfig
from .presets import PRESETS

__all__ = ["GPT", "GPTConfig", "PRESETS"]
