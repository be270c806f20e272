"""Train a GPT on TCT token shards.

    # CPU, tiny model (2.88M parameters at vocab 8192), a couple of minutes on a laptop:
    python -m trainer.train --data out.bin --preset tiny --max-steps 200 --out runs/tiny
    # one GPU, the proof-of-concept model (384 d x 8 layers x 6 heads, context 512, batch 32):
    python -m trainer.train --data out.bin --preset small --max-steps 5000 --out runs/small --compile
    # many GPUs (DDP; NCCL on GPUs, gloo with --device cpu):
    torchrun --standalone --nproc_per_node=8 -m trainer.train --data shards/ --preset medium --compile
    # Muon on the blocks' matrices (AdamW on embeddings, head and gains), as the CPU model uses:
    python -m trainer.train --data out.bin --preset tiny --optimizer muon --learning-rate 4e-3 \
        --muon-lr 0.08 --max-steps 4500 --out runs/tiny-muon
    # continue the run in --out exactly where its last checkpoint left it (same flags):
    python -m trainer.train --data out.bin --preset tiny --max-steps 400 --out runs/tiny --resume

Every GPTConfig field is a flag (--n-layer 6, --sequence-len 512, --tie-embeddings, ...), and so is
every TrainConfig field below. Precedence: dataclass defaults < --preset < flags. The vocabulary size
comes from the shard metadata. In --out: metrics.jsonl (one record per logged step), loss_curve.png,
and checkpoints model_NNNNNN.pt / optim_NNNNNN.pt / meta_NNNNNN.json.

Ctrl-C (or SIGTERM) finishes the current step, saves a checkpoint and exits with status 130; a second
Ctrl-C aborts at once. Exit status 2: bad data, options or checkpoint (the message says which file);
3: the loss became NaN or infinite.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from tct.shard import ShardError

from . import checkpoint, distributed
from .data import WINDOW_FORMATS, BatchLoader, DataError, find_shards, load_data, open_shards
from .distributed import DistInfo, print0
from .metrics import MetricsLog, device_name, peak_flops, plot_loss_curve, truncate_metrics
from .model import GPT, GPTConfig
from .optimizer import OPTIMIZERS, apply_flags, build_optimizer, set_lr
from .presets import PRESETS
from .progress import Progress
from .schedule import default_warmup, lr_at
from .validation_loss import validation_loss


@dataclass
class TrainConfig:
    data: str = ""
    val_data: str | None = None
    val_fraction: float = 0.02
    window_format: str = "plain"
    out: str = "out"
    batch_size: int = 32
    grad_accum: int = 1
    max_steps: int = 5000
    learning_rate: float = 3e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int | None = None
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    optimizer: str = "adamw"
    muon_lr: float = 0.02
    eval_every: int = 250
    eval_tokens: int = 1 << 20
    log_every: int = 10
    save_every: int = 1000
    keep_checkpoints: int = 3
    seed: int = 1337
    device: str = "auto"
    dtype: str = "auto"
    compile: bool = False
    resume: str | None = None
    peak_flops: float | None = None
    progress: bool = True


_HELP = {
    "data": "a shard (.bin/.idx/.meta.json or their stem), a directory of shards, or a glob",
    "val_data": "validation shard(s); default: val shards in --data, else a split of --data",
    "val_fraction": "fraction of --data's documents held out for validation when there is no val shard",
    "window_format": "plain: BOS-aligned windows; position: [position_id, content...]",
    "out": "directory for checkpoints, metrics.jsonl and loss_curve.png",
    "batch_size": "sequences per micro-batch per process",
    "grad_accum": "micro-batches per optimizer step",
    "max_steps": "optimizer steps of the whole run (the schedule ends here)",
    "learning_rate": "peak AdamW learning rate",
    "min_lr_ratio": "final learning rate as a fraction of the peak (cosine decay)",
    "warmup_steps": "linear warmup steps (default: 5%% of --max-steps)",
    "weight_decay": "AdamW weight decay on matmul weights (not norms or embeddings)",
    "beta1": "AdamW beta1",
    "beta2": "AdamW beta2",
    "grad_clip": "clip the global gradient norm to this (0: off)",
    "optimizer": "adamw, or muon: Muon on the blocks' matrices, AdamW on the rest",
    "muon_lr": "peak Muon learning rate (--optimizer muon; --learning-rate is AdamW's)",
    "eval_every": "evaluate every N steps and at the end (0: only at the end)",
    "eval_tokens": "validation budget: the first whole documents up to this many tokens",
    "log_every": "log (progress bar, metrics.jsonl) every N steps",
    "save_every": "checkpoint every N steps and at the end (0: only at the end)",
    "keep_checkpoints": "keep the newest N checkpoints (0: all)",
    "seed": "seed for initialisation and data order",
    "device": "auto: CUDA when available",
    "dtype": "auto: bf16 autocast on CUDA, float32 on CPU",
    "compile": "torch.compile the model",
    "resume": "continue from the latest checkpoint in --out (or from step N: --resume N)",
    "peak_flops": "peak FLOP/s per device for MFU (default: data sheet on GPU, measured on CPU)",
    "progress": "show the progress bar",
}

_TYPES = {
    "int": int,
    "float": float,
    "str": str,
    "int | None": int,
    "float | None": float,
    "str | None": str,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.train",
        description="Train a GPT on TCT token shards (see the module docstring for examples). "
        "Defaults shown are the built-in ones; --preset replaces some of them.",
        argument_default=argparse.SUPPRESS,  # unset flags stay absent, so presets can fill them
    )
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), help="model size and training defaults"
    )
    train = parser.add_argument_group("training")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "resume":
            train.add_argument(flag, nargs="?", const="latest", help=_HELP[f.name])
        elif f.type == "bool":
            train.add_argument(flag, action=argparse.BooleanOptionalAction, help=_HELP[f.name])
        elif f.name == "window_format":
            train.add_argument(flag, choices=WINDOW_FORMATS, help=_HELP[f.name])
        elif f.name == "optimizer":
            train.add_argument(flag, choices=OPTIMIZERS, help=_HELP[f.name])
        elif f.name in ("device", "dtype"):
            choices = (
                ["auto", "cpu", "cuda"] if f.name == "device" else ["auto", "float32", "bfloat16"]
            )
            train.add_argument(flag, choices=choices, help=_HELP[f.name])
        else:
            default = "" if f.default in (None, "") else f" (default: {f.default})"
            train.add_argument(flag, type=_TYPES[str(f.type)], help=_HELP[f.name] + default)
    model = parser.add_argument_group("model (GPTConfig)")
    for f in fields(GPTConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            model.add_argument(flag, action=argparse.BooleanOptionalAction)
        else:
            model.add_argument(flag, type=_TYPES[str(f.type)], help=f"default {f.default}")
    return parser


def parse_args(argv: list[str] | None) -> tuple[TrainConfig, dict[str, Any], dict[str, Any]]:
    """(train config, model fields from preset + flags, model fields given explicitly as flags)."""
    ns = vars(build_parser().parse_args(argv))
    preset = PRESETS[ns.pop("preset")] if "preset" in ns else {"model": {}, "train": {}}
    train_names = {f.name for f in fields(TrainConfig)}
    explicit_train = {k: v for k, v in ns.items() if k in train_names}
    explicit_model = {k: v for k, v in ns.items() if k not in train_names}
    tcfg = TrainConfig(**{**preset["train"], **explicit_train})
    check_in_reading_order(tcfg)
    return tcfg, {**preset["model"], **explicit_model}, explicit_model


def check_in_reading_order(tcfg: TrainConfig) -> None:
    """Report the first wrong option in the order `--help` lists them (data, then validation,
    then numbers; the device is checked next, by `distributed.setup`), before anything is
    written: a typo in --data is named as such, not as a missing GPU or a stray --out folder."""
    if not tcfg.data:
        raise DataError("--data is required")
    open_shards(find_shards(tcfg.data))
    if tcfg.val_data is not None:
        open_shards(find_shards(tcfg.val_data))
    if not 0.0 <= tcfg.val_fraction < 1.0:
        raise DataError(f"--val-fraction {tcfg.val_fraction}: expected 0 <= fraction < 1")
    for name in ("batch_size", "grad_accum", "max_steps"):
        if getattr(tcfg, name) < 1:
            flag = "--" + name.replace("_", "-")
            raise DataError(f"{flag} {getattr(tcfg, name)}: expected at least 1")


class StopRequest:
    """Turns SIGINT/SIGTERM into "stop after this step"; a second signal aborts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print0(
            f"\n{signal.Signals(signum).name}: saving a checkpoint after this step (again to abort)"
        )

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name in ("float32", "fp32"):
        return torch.float32
    if name in ("bfloat16", "bf16"):
        return torch.bfloat16
    raise ValueError(f"--dtype {name!r}: expected auto, float32 or bfloat16")


def train(
    tcfg: TrainConfig, model_fields: dict[str, Any], explicit_model: dict[str, Any], di: DistInfo
) -> int:
    device = di.device
    out = Path(tcfg.out)
    # ---- data (before --out is created: wrong data writes nothing) ---------------------------
    data = load_data(tcfg.data, tcfg.val_data, tcfg.val_fraction)
    if di.is_master:
        out.mkdir(parents=True, exist_ok=True)
        for p in checkpoint.remove_stale_temporaries(out):
            print0(f"removed an unfinished checkpoint file from a killed run: {p}")
    distributed.barrier()

    tok = data.tokenizer
    needed_vocab = tok.model_vocab_size(tcfg.window_format)

    # ---- model config, fresh or from a checkpoint --------------------------------------------
    resume_step: int | None = None
    ck: tuple[dict, dict, dict] | None = None
    if tcfg.resume is not None:
        resume_step = checkpoint.latest(out) if tcfg.resume == "latest" else int(tcfg.resume)
        if resume_step is None:
            raise checkpoint.CheckpointError(f"--resume: no complete checkpoint in {out}")
        ck = checkpoint.load(out, resume_step, device)
        ck_meta = ck[2]
        cfg = GPTConfig.from_dict(ck_meta["model_config"])
        clash = {k: v for k, v in explicit_model.items() if getattr(cfg, k) != v}
        if clash:
            raise checkpoint.CheckpointError(
                f"--resume: flags {clash} differ from the checkpoint's model config {asdict(cfg)}"
            )
        if ck_meta["tokenizer"] != tok.identity():
            raise checkpoint.CheckpointError(
                f"{out}/meta_{resume_step:06d}.json: tokenizer {ck_meta['tokenizer']} differs from "
                f"the data's {tok.identity()}"
            )
    else:
        if checkpoint.latest(out) is not None:
            raise checkpoint.CheckpointError(
                f"{out} already holds checkpoints: pass --resume to continue, or another --out"
            )
        model_fields = dict(model_fields)
        vocab = model_fields.pop("vocab_size", needed_vocab)
        if vocab < needed_vocab:
            raise DataError(f"--vocab-size {vocab} is below the data's {needed_vocab}")
        try:
            cfg = GPTConfig(vocab_size=vocab, **model_fields)
        except ValueError as e:
            raise DataError(f"model options: {e}") from None

    # ---- model, optimizer, loaders -------------------------------------------------------------
    torch.manual_seed(tcfg.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # float32 matmuls on tensor cores
        torch.backends.cudnn.allow_tf32 = True
    raw_model = GPT(cfg).to(device)
    optimizer = build_optimizer(raw_model, tcfg, device)
    loader = BatchLoader(
        data.train,
        tok,
        sequence_len=cfg.sequence_len,
        batch_size=tcfg.batch_size,
        window_format=tcfg.window_format,
        seed=tcfg.seed,
        rank=di.rank,
        world_size=di.world_size,
        device=device,
    )
    start_step = 0
    if ck is not None:
        model_state, optim_state, ck_meta = ck
        raw_model.load_state_dict(model_state)
        stored = ck_meta.get("train_config", {}).get("optimizer", "adamw")
        if stored != tcfg.optimizer:
            raise checkpoint.CheckpointError(
                f"{out}/meta_{resume_step:06d}.json: trained with --optimizer {stored}, "
                f"not {tcfg.optimizer}"
            )
        optimizer.load_state_dict(optim_state)
        # The optimizer state carries the old hyperparameters; this run's flags win.
        apply_flags(optimizer, raw_model, tcfg)
        loader.load_state(ck_meta["loader"])
        checkpoint.set_rng_state(ck_meta["rng"])
        start_step = int(ck_meta["step"])
        del ck, model_state, optim_state
    val_loader = None
    if data.val is not None:
        val_docs = data.val.head(tcfg.eval_tokens)
        val_loader = BatchLoader(
            val_docs,
            tok,
            sequence_len=cfg.sequence_len,
            batch_size=tcfg.batch_size,
            window_format=tcfg.window_format,
            rank=di.rank,
            world_size=di.world_size,
            device=device,
        )

    model: torch.nn.Module = raw_model
    if tcfg.compile:
        model = torch.compile(model)  # type: ignore[assignment]
    if di.ddp:
        model = DDP(model, device_ids=[di.local_rank] if device.type == "cuda" else None)

    dtype = resolve_dtype(tcfg.dtype, device)
    autocast = (
        torch.autocast(device_type=device.type, dtype=dtype)
        if dtype != torch.float32
        else contextlib.nullcontext()
    )
    warmup = tcfg.warmup_steps if tcfg.warmup_steps is not None else default_warmup(tcfg.max_steps)
    tokens_per_step = tcfg.batch_size * cfg.sequence_len * tcfg.grad_accum * di.world_size
    flops_per_token = raw_model.flops_per_token()
    peak, peak_source = peak_flops(device, dtype, tcfg.peak_flops)

    print0(
        f"device: {device_name(device)} x {di.world_size} process(es), {dtype}, compile={tcfg.compile}"
    )
    print0(
        f"model: {raw_model.num_params() / 1e6:.2f}M parameters "
        f"({raw_model.num_params(non_embedding=True) / 1e6:.2f}M without the input embedding), {cfg}"
    )
    print0(
        f"data: {len(data.train_paths)} shard(s), {data.train.num_docs} documents, "
        f"{data.train.total_tokens:,} tokens, tokenizer {tok.name} ({tok.hash}); "
        f"{loader.num_windows:,} {tcfg.window_format} windows of {cfg.sequence_len} "
        f"(x{loader.plan.redundancy:.2f} tokens for BOS alignment)"
    )
    if val_loader is not None:
        print0(
            f"validation: {data.val_source}; evaluating {val_loader.docs.num_docs} documents, "
            f"{val_loader.docs.predicted_tokens:,} scored tokens"
        )
    else:
        print0(f"validation: {data.val_source}")
    print0(
        f"{tokens_per_step:,} tokens per step, {tcfg.max_steps} steps, warmup {warmup}, "
        f"MFU peak: {peak_source}" + (f" = {peak / 1e12:.2f} TFLOP/s" if peak else "")
    )
    if start_step:
        print0(f"resumed from {out}/meta_{start_step:06d}.json (epoch {loader.epoch:.3f})")

    metrics_path = out / "metrics.jsonl"
    if di.is_master:
        truncate_metrics(metrics_path, start_step)  # a resumed run re-logs later steps
    log = MetricsLog(metrics_path, enabled=di.is_master)
    bar = Progress(tcfg.max_steps, initial=start_step, enabled=di.is_master and tcfg.progress)

    def save(step: int, data_state: dict[str, Any], record: dict[str, Any]) -> None:
        if not di.is_master:
            return
        meta = {
            "format": "tct-trainer-checkpoint",
            "version": 1,
            "model_config": asdict(cfg),
            "train_config": asdict(tcfg),
            "tokenizer": tok.identity(),
            "data": {
                "train": [str(p) for p in data.train_paths],
                "val": [str(p) for p in data.val_paths],
                "val_source": data.val_source,
            },
            "loader": data_state,
            "rng": checkpoint.rng_state(),
            "world_size": di.world_size,
            "torch": torch.__version__,
            "metrics": record,
        }
        path = checkpoint.save(out, step, raw_model.state_dict(), optimizer.state_dict(), meta)
        checkpoint.prune(out, tcfg.keep_checkpoints)
        bar.write(f"step {step}: saved {path.name}")
        saved.update(checkpoint_step=step, checkpoint=str(checkpoint.paths(out, step)["model"]))

    # The last checkpoint written: the summary names it, since an interrupt saves at the step it
    # stopped on while the metrics it reports come from the last log step before.
    saved: dict[str, Any] = {}

    # ---- the loop ------------------------------------------------------------------------------
    step = start_step
    exit_code = 0
    data_state = loader.state()  # position of the first batch of the coming step
    x, y = loader.next_batch()
    last_record: dict[str, Any] = {}
    t_log, steps_since_log = time.perf_counter(), 0
    t_start = t_log
    paused = 0.0  # seconds spent saving since the last log: not training time
    with StopRequest() as stop:
        while step < tcfg.max_steps:
            factor = lr_at(
                step,
                peak=1.0,
                warmup_steps=warmup,
                max_steps=tcfg.max_steps,
                min_lr_ratio=tcfg.min_lr_ratio,
            )
            set_lr(optimizer, factor)  # every group: its peak x the schedule
            lr = factor * tcfg.learning_rate
            loss_sum = torch.zeros((), device=device)
            for micro in range(tcfg.grad_accum):
                last = micro == tcfg.grad_accum - 1
                # Gradients are averaged across processes only on the last micro-batch.
                sync = model.no_sync() if di.ddp and not last else contextlib.nullcontext()  # type: ignore[operator]
                with sync:
                    with autocast:
                        loss = model(x, y) / tcfg.grad_accum
                    if last:
                        data_state = loader.state()
                    # Fetch the next batch while the device works on this one.
                    x, y = loader.next_batch()
                    loss.backward()
                loss_sum += loss.detach()
            grad_norm = (
                torch.nn.utils.clip_grad_norm_(raw_model.parameters(), tcfg.grad_clip)
                if tcfg.grad_clip > 0
                else None
            )
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            steps_since_log += 1

            final = step == tcfg.max_steps
            do_eval = val_loader is not None and (
                final or (tcfg.eval_every > 0 and step % tcfg.eval_every == 0)
            )
            do_log = final or do_eval or step % tcfg.log_every == 0
            if do_log:
                train_loss = distributed.all_reduce_sum(loss_sum).item() / di.world_size
                now = time.perf_counter()
                tok_s = steps_since_log * tokens_per_step / (now - t_log - paused)
                mfu = tok_s / di.world_size * flops_per_token / peak if peak else None
                record: dict[str, Any] = {
                    "step": step,
                    "train_loss": train_loss,
                    "lr": lr,
                    "grad_norm": float(grad_norm) if grad_norm is not None else None,
                    "tokens_per_s": tok_s,
                    "mfu": mfu,
                    "tokens": step * tokens_per_step,
                    "epoch": loader.epoch,
                    "elapsed_s": now - t_start,
                }
                if do_eval:
                    assert val_loader is not None
                    record.update(validation_loss(raw_model, val_loader, autocast))
                    bpb = record["val_bpb"]
                    bar.write(
                        f"step {step}: val_loss {record['val_loss']:.4f}"
                        + (f" val_bpb {bpb:.4f}" if bpb is not None else "")
                    )
                log.write(record)
                last_record = record
                fields_ = {
                    "loss": f"{train_loss:.4f}",
                    "lr": f"{lr:.2e}",
                    "tok/s": f"{tok_s:,.0f}",
                    "MFU": f"{100 * mfu:.1f}%" if mfu is not None else "n/a",
                }
                bar.update(step, fields_)
                if not math.isfinite(train_loss):
                    bar.write(f"step {step}: loss is {train_loss}; stopping")
                    exit_code = 3
                    break
                # Evaluation time is not training time either.
                t_log, steps_since_log, paused = time.perf_counter(), 0, 0.0
            # All ranks must agree to stop at the same step (DDP); checking costs a sync, so with
            # several processes it happens at log steps only.
            stopping = (
                stop.requested
                if not di.ddp
                else (do_log and distributed.any_rank(stop.requested, device))
            )
            if final or stopping or (tcfg.save_every > 0 and step % tcfg.save_every == 0):
                t_save = time.perf_counter()
                save(step, data_state, last_record)
                paused += time.perf_counter() - t_save
            if stopping:
                exit_code = 130
                break
    bar.close()
    log.close()
    if di.is_master:
        if plot_loss_curve(metrics_path, out / "loss_curve.png"):
            print0(f"loss curve: {out / 'loss_curve.png'}")
        if last_record or saved:
            summary = {k: v for k, v in last_record.items() if v is not None}
            if last_record and saved and last_record["step"] != saved["checkpoint_step"]:
                # Name both steps plainly: the metrics are older than the checkpoint.
                summary["metrics_step"] = summary.pop("step")
            summary.update(saved)
            print0("final: " + json.dumps(summary))
    distributed.barrier()
    return exit_code


def main(argv: list[str] | None = None) -> int:
    try:
        tcfg, model_fields, explicit_model = parse_args(argv)
        di = distributed.setup(tcfg.device)
    except (DataError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        return train(tcfg, model_fields, explicit_model, di)
    except (DataError, ShardError, checkpoint.CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        distributed.teardown()


if __name__ == "__main__":
    sys.exit(main())
