"""Training-side benchmarks of videosspo at the settings of a config (compare ratios, not absolute numbers).

    python benchmarks/bench_train.py --quick                       # < 2 min on 2 CPU cores
    python benchmarks/bench_train.py --config configs/animatediff_sspo.yaml --frames 16 --height 64 --width 64
    python benchmarks/bench_train.py --config configs/wan_sspo.yaml --quick     # a DiT family: the config's own
    python benchmarks/bench_train.py --family all --device cuda

Every trainer is built from `--config` (default configs/animatediff_sspo.yaml) with the method
switched (sft / dpo / sspo) and only shapes overridden: the model is the family's tiny random-weight
denoiser (`--size medium`: `model.size: medium`, UNets with block_out_channels (64, 128, 256), DiTs of width 128 and
4 blocks, models/tiny.py)
instead of the pretrained one, frames / height / width / batch / LoRA rank from the flags, fp32 on CPU. Everything else,
loser.* (steps, CFG, scheduler, reuse, init), method.beta, gradient checkpointing, attention, comes
from the config, defaults included. `--quick` shrinks shapes and repeats, never the method's settings.
The family is the config's unless `--family` names others (`all`: every family the config's
samplers apply to). Frames are rounded up to what the family's VAE takes (4k+1 for Wan, 8k+1 for
CogVideoX and LTX; 1 for sd); height and width must be multiples of 16 for Wan and CogVideoX (VAE 8 x
patch 2), of 32 for LTX.

Sections (each a key of the JSON and a table on stdout):
  train_step        s/step, loser seconds, peak memory and counted UNet work for sft / dpo / sspo, in the
                    config's mode (LoRA rank r or full) and full fine-tuning; `summary` holds SSPO/SFT,
                    DPO/SFT, the loser share and the peak memory of each method per mode
  loser_options     the loser switches of LoserConfig (solver and steps, reuse, init: winner), each an
                    sspo trainer: loser s/step, SSPO/SFT, UNet rows per step
  concat_forward    one `predict` at batch 2b (winners + losers) vs two at b: time ratio and max |difference|
  reference_memory  bytes the reference costs: LoRA adapter swap vs full fine-tuning's reference copy
  loser_cost        `Losers.sample` seconds per loser.steps vs the training forward/backward
  sampling          `sample_latents` throughput (frames/s) per scheduler
  memory            peak memory of an SSPO step at 16 frames (17 for the DiTs): naive attention / + efficient
                    attention / + gradient checkpointing / + both / + LoRA, each in a fresh subprocess (CPU:
                    RSS; CUDA: max allocated), beside the policy pass alone and the loser sampling. Naive
                    attention: diffusers' classic `AttnProcessor` for the UNets; torch SDPA held to its math
                    kernel (the attention matrix materialised) for the DiTs, whose processors call SDPA

Counted work (exact, machine-independent; for tests that assert relations without timing), per
optimizer step averaged over a loser.reuse window, in UNet *rows* (one sample through the denoiser
once; a CFG call on b samples is 2b rows): `unet_rows_per_step` = `policy_rows_per_step` (with grad)
+ `reference_rows_per_step` (no grad) + `loser_rows_per_step` (sampling, no grad), and
`unet_calls_per_step` (denoiser calls). Expected: sft b; dpo 2b + 2b; sspo 2b + 2b +
b x round(strength x steps) x (2 with CFG else 1) / reuse. `forward_equivalents_per_step` =
3 x policy + reference + loser rows (a backward costs about two forwards); the `*_counted` ratios
divide these, the timing-free prediction of SSPO/SFT and DPO/SFT.

Timings: warm-up, then `--repeat` repeats (each a whole loser.reuse window, per step), median; the
cases of a section interleave their repeats so that machine drift hits all alike.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import itertools
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.bench_common import (
    PeakMemory,
    environment,
    mib,
    module_bytes,
    summarize,  # noqa: E402
    sync,
    table,
    time_fn,
    time_pair,
)
from models import FAMILIES as MODEL_FAMILIES  # noqa: E402
from videosspo.methods import get_method  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "bench_train.json"
# Every family whose frame count the benchmark may choose (not one whose weights fix it).
FAMILIES = tuple(name for name, family in MODEL_FAMILIES.items() if not family.fixed_frames)
METHODS = ("sft", "dpo", "sspo")


@dataclasses.dataclass
class Settings:
    config: str = str(ROOT / "configs" / "animatediff_sspo.yaml")
    frames: int = 8
    height: int = 32  # pixels; the tiny VAE has factor 2 -> 16x16 latents
    width: int = 32
    batch: int | None = None  # winners per micro-batch; None: the config's optim.batch_size
    lora_rank: int | None = None  # None: the config's model.lora_rank
    warmup: int = 1
    repeat: int = 5
    loser_steps: tuple[int, ...] = (4, 8, 20)
    loser_options: tuple[str, ...] = ()  # names in LOSER_OPTIONS; empty: all
    sample_steps: int = 10
    size: str = "tiny"


def settings_from_args(args) -> Settings:
    s = Settings(config=args.config)
    if args.quick:
        s = Settings(config=args.config, frames=4, height=16, width=16, repeat=3, loser_steps=(4, 8), sample_steps=4)
    if args.size == "medium":
        s.size = "medium"
    for key in ("frames", "height", "width", "batch", "repeat", "warmup", "lora_rank", "sample_steps"):
        value = getattr(args, key.replace("-", "_"))
        if value is not None:
            setattr(s, key, value)
    if args.loser_steps:
        s.loser_steps = tuple(args.loser_steps)
    if args.loser_options:
        s.loser_options = tuple(args.loser_options)
    base = base_config(s)
    s.batch = s.batch or base.optim.batch_size
    s.lora_rank = base.model.lora_rank if s.lora_rank is None else s.lora_rank
    return s


def base_config(s: Settings):
    from videosspo.config import load_config

    return load_config(s.config)


# ----------------------------------------------------------------------------- model & trainer plumbing


@functools.cache
def tiny_model(family: str):
    """The family's tiny model, built once: what its VAE takes and which samplers apply."""
    from models import build_model
    from videosspo.config import ModelConfig

    return build_model(ModelConfig(family=family))


def frames_for(family: str, s: Settings) -> int:
    """`s.frames`, rounded up to a count the family's VAE takes (k n + 1 frames when it compresses time k x)."""
    if MODEL_FAMILIES[family].image_model:
        return 1
    step = tiny_model(family).frame_step
    return s.frames if step == 1 else 1 + step * math.ceil((s.frames - 1) / step)


def families_for(names: list[str], s: Settings) -> list[str]:
    """`names` (`all`: every family whose samplers include the config's sample and loser schedulers)."""

    if names != ["all"]:
        return names
    cfg = base_config(s)
    return [f for f in FAMILIES if {cfg.sample.scheduler, cfg.loser.scheduler} <= set(tiny_model(f).samplers)]


def make_config(family: str, method: str, lora_rank: int, data: Path, out: Path, s: Settings, device: str, **extra):
    """`s.config` with `method`, the tiny model of `family`, the benchmark's shapes; `extra`: {"loser.steps": 4, ...}."""
    from videosspo.config import load_config

    base = base_config(s)
    overrides = {
        "model": {"family": family, "pretrained": None, "motion_adapter": None, "lora_rank": lora_rank, "size": s.size},
        "data": {
            "path": str(data),
            "synth_if_missing": 0,
            "frames": frames_for(family, s),
            "height": s.height,
            "width": s.width,
            "num_workers": 0,
            "latent_cache": None,
        },
        "method": {"name": method},
        "replay": {"interval": 10**6},  # the pool holds theta_0: snapshot cost is the reference_memory section's
        "optim": {"batch_size": s.batch, "grad_accum": 1, "warmup_steps": 0},
        "train": {
            "output_dir": str(out),
            "max_steps": 10**6,
            "checkpoint_every": 0,
            "mixed_precision": "no" if device == "cpu" else base.train.mixed_precision,
            "export": base.train.export if lora_rank else "merged",
        },
    }
    for key, value in extra.items():
        section, name = key.split(".")
        overrides.setdefault(section, {})[name] = value
    return load_config(s.config, overrides)


def make_trainer(cfg, s: Settings, device: str):
    from accelerate import Accelerator

    from videosspo.trainer import Trainer

    return Trainer(cfg, Accelerator(cpu=device == "cpu", mixed_precision="no"))


def fixed_batch(trainer, n: int) -> dict:
    """A micro-batch as the trainer's loader yields it: {pixels, captions, indices, positions[, loser_pixels]}."""
    items = [trainer.data.get(i % len(trainer.data), seed=i) for i in range(n)]
    batch = {
        "pixels": torch.stack([b["pixels"] for b in items]),
        "captions": [b["caption"] for b in items],
        "indices": list(range(n)),
        "positions": list(range(n)),
        "unreadable": [],
    }
    if all("loser_pixels" in b for b in items):
        batch["loser_pixels"] = torch.stack([b["loser_pixels"] for b in items])
    return batch


def repeated(batch: dict):
    """The trainer's batch stream, always `batch` (a `Lookahead`: loser.overlap peeks at the next step's)."""
    from videosspo.stream import Lookahead

    return Lookahead(itertools.repeat(batch))


def train_step(trainer, batches) -> dict:
    """One optimizer step as training runs it (`Trainer.optimizer_step`: loss, backward, clip, AdamW) on `batches`."""
    return trainer.optimizer_step(batches)


def train_window(trainer, batches, first_step: int) -> float:
    """The loser.reuse window of steps starting at `first_step` (losers sampled at its first step); loser seconds
    (with loser.overlap: the wait for the worker)."""
    losers = 0.0
    for step in range(first_step, first_step + trainer.config.loser.reuse):
        trainer.step = step
        losers += train_step(trainer, batches).get("time/losers_s", 0.0)
    if (
        trainer.losers.overlap
    ):  # the next step's losers: what the worker has not hidden behind this step, step r+1 waits for
        t0 = time.perf_counter()
        for future in trainer.losers.overlap.pending.values():
            future.result()
        losers += time.perf_counter() - t0
    return losers


@contextlib.contextmanager
def count_unet_work(trainer):
    """Counts denoiser calls and rows (samples through the UNet) per phase: policy (grad), reference, losers."""
    counts = {"calls": 0, "policy": 0, "reference": 0, "losers": 0}
    sampling = threading.local()  # per thread: loser.overlap samples in a worker thread
    lock = threading.Lock()
    cls, real_predict, real_sample = type(trainer.model), type(trainer.model).predict, trainer.losers.sample_now

    def predict(self, x_t, t, cond):
        phase = "losers" if getattr(sampling, "on", False) else "policy" if torch.is_grad_enabled() else "reference"
        with lock:
            counts["calls"] += 1
            counts[phase] += x_t.shape[0]
        return real_predict(self, x_t, t, cond)

    def sample(*args, **kwargs):
        sampling.on = True
        try:
            return real_sample(*args, **kwargs)
        finally:
            sampling.on = False

    cls.predict, trainer.losers.sample_now = predict, sample
    try:
        yield counts
    finally:
        cls.predict = real_predict
        del trainer.losers.sample_now


def run_cases(cases: list[dict], s: Settings, device) -> None:
    """Time every case's trainer on its fixed batch, round-robin; fills times, losers, peak, work (per step)."""
    for case in cases:
        case.update(times=[], losers=[], peak=0, mem_method="", work={})
        for w in range(s.warmup):
            train_window(case["trainer"], case["batch"], w * case["trainer"].config.loser.reuse)
    for r in range(s.warmup, s.warmup + s.repeat):
        for case in cases:
            tr = case["trainer"]
            reuse = tr.config.loser.reuse
            with PeakMemory(device) as mem, count_unet_work(tr) as work:
                sync(device)
                t0 = time.perf_counter()
                losers = train_window(tr, case["batch"], r * reuse)
                sync(device)
                case["times"].append((time.perf_counter() - t0) / reuse)
            case["losers"].append(losers / reuse)
            case["peak"] = max(case["peak"], mem.peak_delta_bytes)
            case["mem_method"] = mem.method
            case["work"] = {k: v / reuse for k, v in work.items()}


def case_row(case: dict) -> dict:
    tr = case["trainer"]
    cfg, timing, work = tr.config, summarize(case["times"]), case["work"]
    params = list(tr.model.unet.parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    opt_state = sum(
        t.numel() * t.element_size()
        for st in tr.optimizer.state.values()
        for t in st.values()
        if torch.is_tensor(t) and t.ndim > 0
    )
    row = {
        "family": cfg.model.family,
        "method": cfg.method.name,
        "mode": f"lora{cfg.model.lora_rank}" if cfg.model.lora_rank else "full",
        "s_per_step": timing["median_s"],
        "min_s": timing["min_s"],
        "max_s": timing["max_s"],
        "repeats": timing["n"],
        "peak_mem_delta_mb": mib(case["peak"]),
        "mem_method": case["mem_method"],
        "unet_params": sum(p.numel() for p in params),
        "trainable_params": trainable,
        "grad_plus_adam_mb": mib(trainable * 4 + opt_state),
        "batch": cfg.optim.batch_size,
        "unet_calls_per_step": work["calls"],
        "unet_rows_per_step": work["policy"] + work["reference"] + work["losers"],
        "policy_rows_per_step": work["policy"],
        "reference_rows_per_step": work["reference"],
        "loser_rows_per_step": work["losers"],
        # backward ~ 2 forwards: a machine-independent cost in forward passes of one sample
        "forward_equivalents_per_step": 3 * work["policy"] + work["reference"] + work["losers"],
    }
    if get_method(cfg.method.name).losers == "sampled":
        losers = summarize(case["losers"])["median_s"]
        row.update({f"loser_{k}": v for k, v in dataclasses.asdict(cfg.loser).items()})
        row.update(
            {
                "losers_s": losers,
                "s_per_step_wo_losers": max(timing["median_s"] - losers, 1e-9),
                "loser_share": losers / timing["median_s"],
            }
        )
    return row


# ----------------------------------------------------------------------------- 1. training step


def bench_train_step(family, data, tmp, s: Settings, device) -> list[dict]:
    """sft / dpo / sspo in the config's mode (and full fine-tuning), built first, then timed round-robin."""
    cases = []
    for lora in dict.fromkeys((s.lora_rank, 0)):
        for method in METHODS:
            tr = make_trainer(make_config(family, method, lora, data, tmp / f"{method}_{lora}", s, device), s, device)
            cases.append({"trainer": tr, "batch": repeated(fixed_batch(tr, s.batch))})
    run_cases(cases, s, device)
    rows = [case_row(case) for case in cases]
    cases.clear()
    return rows


def step_summary(rows: list[dict]) -> list[dict]:
    """Per (family, mode): SSPO/SFT, DPO/SFT, the loser share of an SSPO step, peak memory and UNet rows of each method."""
    out = []
    for key in dict.fromkeys((r["family"], r["mode"]) for r in rows):
        by = {r["method"]: r for r in rows if (r["family"], r["mode"]) == key}
        sft = by["sft"]["s_per_step"]
        item = {
            "family": key[0],
            "mode": key[1],
            "sft_s": sft,
            "dpo_over_sft": by["dpo"]["s_per_step"] / sft,
            "sspo_over_sft": by["sspo"]["s_per_step"] / sft,
            "loser_share": by["sspo"]["loser_share"],
            "sspo_over_sft_counted": by["sspo"]["forward_equivalents_per_step"]
            / by["sft"]["forward_equivalents_per_step"],
            "dpo_over_sft_counted": by["dpo"]["forward_equivalents_per_step"]
            / by["sft"]["forward_equivalents_per_step"],
        }
        for method in METHODS:
            item[f"{method}_peak_mem_mb"] = by[method]["peak_mem_delta_mb"]
            item[f"{method}_unet_rows_per_step"] = by[method]["unet_rows_per_step"]
        out.append(item)
    return out


# ----------------------------------------------------------------------------- 1b. loser options

# The loser switches of LoserConfig, each applied on top of the config's loser section; every option but
# `config` trains each batch once (loser.reuse 1) unless it sets reuse, so an option's cost is its own.
LOSER_OPTIONS = {
    "config": {},
    "ddim_20": {"loser.scheduler": "ddim", "loser.steps": 20},  # SSPO_METHOD.md's loser, the configs' before issue 10
    "no_cfg": {"loser.guidance": 1.0},
    "dpm++_8": {"loser.scheduler": "dpm++", "loser.steps": 8},
    "unipc_6": {"loser.scheduler": "unipc", "loser.steps": 6},
    "unipc_4": {"loser.scheduler": "unipc", "loser.steps": 4},
    "reuse_4": {"loser.reuse": 4},
    "winner_0.5": {"loser.init": "winner", "loser.strength": 0.5},
    "unipc_6_winner_0.5": {"loser.scheduler": "unipc", "loser.steps": 6, "loser.init": "winner", "loser.strength": 0.5},
    "unipc_4_reuse_2": {"loser.scheduler": "unipc", "loser.steps": 4, "loser.reuse": 2},
    "overlap": {"loser.overlap": True},
    "unipc_4_overlap": {"loser.scheduler": "unipc", "loser.steps": 4, "loser.overlap": True},
}


def bench_loser_options(family, data, tmp, s: Settings, device) -> list[dict]:
    """An sspo trainer per loser option and one sft trainer (the ratio's denominator), timed round-robin.

    Options whose sampler does not apply to the family (`dpm++` for the DiTs, `unipc` for CogVideoX) are left out."""

    names = s.loser_options or tuple(LOSER_OPTIONS)
    unknown = [n for n in names if n not in LOSER_OPTIONS]
    if unknown:
        raise SystemExit(f"--loser-options {' '.join(unknown)}: unknown; choose from {', '.join(LOSER_OPTIONS)}")
    samplers = tiny_model(family).samplers
    names = [n for n in names if LOSER_OPTIONS[n].get("loser.scheduler", base_config(s).loser.scheduler) in samplers]
    cases = []
    for name in ("sft", *names):
        method, extra = ("sft", {}) if name == "sft" else ("sspo", LOSER_OPTIONS[name])
        if name not in ("sft", "config"):
            extra = {"loser.reuse": 1, **extra}
        cfg = make_config(family, method, s.lora_rank, data, tmp / f"opt_{name}", s, device, **extra)
        tr = make_trainer(cfg, s, device)
        cases.append({"name": name, "trainer": tr, "batch": repeated(fixed_batch(tr, s.batch))})
    run_cases(cases, s, device)
    sft = summarize(cases[0]["times"])["median_s"]
    sft_work = case_row(cases[0])["forward_equivalents_per_step"]
    rows = []
    for case in cases[1:]:
        row = case_row(case)
        rows.append(
            {
                "option": case["name"],
                "overrides": " ".join(f"{k}={v}" for k, v in LOSER_OPTIONS[case["name"]].items()),
                **{
                    k: row[k]
                    for k in row
                    if k.startswith("loser_")
                    or k
                    in (
                        "family",
                        "mode",
                        "losers_s",
                        "s_per_step",
                        "unet_rows_per_step",
                        "forward_equivalents_per_step",
                    )
                },
                "sft_s_per_step": sft,
                "sspo_over_sft": row["s_per_step"] / sft,
                "sspo_over_sft_counted": row["forward_equivalents_per_step"] / sft_work,
            }
        )
    cases.clear()
    return rows


# ----------------------------------------------------------------------------- 2. concatenated forward


def bench_concat(family, data, tmp, s: Settings, device) -> dict:
    """One `predict` at 2b vs two at b, on the policy network the trainer uses (full fine-tuning)."""
    from videosspo.losses import per_sample_error
    from videosspo.objectives import get_objective

    tr = make_trainer(make_config(family, "sspo", 0, data, tmp / "concat", s, device), s, device)
    model, b = tr.model, s.batch
    g = torch.Generator().manual_seed(0)
    shape = model.latent_shape(frames_for(family, s), s.height, s.width)
    x0 = torch.randn((2 * b, *shape), generator=g).to(device)
    noise = torch.randn((b, *shape), generator=g).to(device).repeat(2, 1, 1, 1, 1)
    objective = get_objective(model.objective)  # the family's noising, target and timestep density
    t = objective.timesteps(model.scheduler, 0, 0, list(range(b)), seq_len=math.prod(shape[1:])).to(device).repeat(2)
    cond = model.encode_prompt(fixed_batch(tr, b)["captions"]).float().repeat(2, 1, 1)
    x_t = objective.noisy(model.scheduler, x0, noise, t)
    target = objective.target(model.scheduler, x0, noise, t)

    # numerical equality, eval mode, no grad
    model.unet.eval()
    with torch.no_grad():
        out_cat = model.predict(x_t, t, cond)
        out_sep = torch.cat([model.predict(x_t[:b], t[:b], cond[:b]), model.predict(x_t[b:], t[b:], cond[b:])])
        e_cat, e_sep = per_sample_error(out_cat, target), per_sample_error(out_sep, target)
    err_diff = (e_cat - e_sep).abs().max().item()
    out_diff = (out_cat - out_sep).abs().max().item()

    def fwd_cat():
        with torch.no_grad():
            model.predict(x_t, t, cond)

    def fwd_sep():
        with torch.no_grad():
            model.predict(x_t[:b], t[:b], cond[:b])
            model.predict(x_t[b:], t[b:], cond[b:])

    f_cat, f_sep = time_pair(fwd_cat, fwd_sep, s.warmup, s.repeat, device)
    model.unet.train()

    def fb_cat():
        per_sample_error(model.predict(x_t, t, cond), target).mean().backward()
        model.unet.zero_grad(set_to_none=True)

    def fb_sep():
        e_w = per_sample_error(model.predict(x_t[:b], t[:b], cond[:b]), target[:b])
        e_l = per_sample_error(model.predict(x_t[b:], t[b:], cond[b:]), target[b:])
        torch.cat([e_w, e_l]).mean().backward()
        model.unet.zero_grad(set_to_none=True)

    fb_c, fb_s = time_pair(fb_cat, fb_sep, s.warmup, s.repeat, device)
    return {
        "family": family,
        "batch_per_side": b,
        "latent_shape": list(shape),
        "forward_concat_s": f_cat["median_s"],
        "forward_separate_s": f_sep["median_s"],
        "forward_ratio_sep_over_cat": f_sep["median_s"] / f_cat["median_s"],
        "fwd_bwd_concat_s": fb_c["median_s"],
        "fwd_bwd_separate_s": fb_s["median_s"],
        "fwd_bwd_ratio_sep_over_cat": fb_s["median_s"] / fb_c["median_s"],
        "max_abs_diff_error": err_diff,
        "max_abs_diff_output": out_diff,
    }


# ----------------------------------------------------------------------------- 3. reference memory


def bench_reference_memory(family, data, tmp, s: Settings, device) -> list[dict]:
    from models.lora import REFERENCE

    rows = []
    for lora in (s.lora_rank, 0):
        tr = make_trainer(make_config(family, "sspo", lora, data, tmp / f"ref_{lora}", s, device), s, device)
        unet = tr.model.unet
        policy_bytes = module_bytes(unet)
        snapshot_bytes = tr.pool.cpu_bytes
        with PeakMemory(device) as mem, tr.policy.reference(tr.pool, 0) as ref:
            pass
        if ref.unet is unet:  # LoRA: the same network with the `ref` adapter slot active
            slot = sum(p.numel() * p.element_size() for n, p in unet.named_parameters() if f".{REFERENCE}." in n)
            held = "ref adapter slot in the policy UNet"
        else:  # full fine-tuning: a second UNet
            slot = module_bytes(ref.unet)
            held = "reference UNet copy"
        # Cost of switching the reference to another snapshot (random replay draws change it most steps):
        # a second snapshot in the pool, then alternate draws 0 / 1.
        tr.pool.add(1, tr.policy.snapshot())
        turn = iter(range(10**9))

        def swap():
            with tr.policy.reference(tr.pool, next(turn) % 2):
                pass

        swap_s = time_fn(swap, s.warmup, s.repeat, device)["median_s"]
        rows.append(
            {
                "family": family,
                "mode": f"lora{lora}" if lora else "full",
                "reference_holds": held,
                "swap_snapshot_s": swap_s,
                "policy_unet_mb": mib(policy_bytes),
                "reference_extra_mb": mib(slot),
                "snapshot_mb": mib(snapshot_bytes),
                "total_extra_mb": mib(slot + snapshot_bytes),
                "reference_extra_bytes": slot,
                "snapshot_bytes": snapshot_bytes,
                "total_extra_bytes": slot + snapshot_bytes,
                "first_reference_peak_mem_delta_mb": mib(mem.peak_delta_bytes),
            }
        )
        del tr, unet, ref
    return rows


# ----------------------------------------------------------------------------- 4. loser cost


def bench_losers(family, data, tmp, s: Settings, device) -> dict:
    from videosspo.losers import LoserCache

    tr = make_trainer(make_config(family, "sspo", 0, data, tmp / "losers", s, device, **{"loser.reuse": 1}), s, device)
    batch = fixed_batch(tr, s.batch)
    base_cfg = tr.config
    # The training forward/backward: the sspo step with its losers served from the cache (reuse huge).
    tr.losers.cache = LoserCache(10**9)
    batches = repeated(batch)
    train_step(tr, batches)
    fb = time_fn(lambda: train_step(tr, batches), s.warmup, s.repeat, device)["median_s"]

    rows = []
    for steps in s.loser_steps:
        tr.config = dataclasses.replace(base_cfg, loser=dataclasses.replace(base_cfg.loser, steps=steps, reuse=1))
        tr.losers.cache = LoserCache(1)
        gen = time_fn(lambda: tr.losers.sample(batch, 0), s.warmup, s.repeat, device)["median_s"]
        rows.append(
            {
                "family": family,
                "loser_steps": steps,
                "losers_s": gen,
                "train_fwd_bwd_s": fb,
                "ratio_losers_over_train": gen / fb,
                "s_per_sampler_step": gen / steps,
                "sspo_step_s_est": gen + fb,
            }
        )

    return {"by_steps": rows}


# ----------------------------------------------------------------------------- 5. sampling


def bench_sampling(family, data, tmp, s: Settings, device) -> list[dict]:
    from videosspo.sampling import sample_latents

    tr = make_trainer(make_config(family, "sft", 0, data, tmp / "sampling", s, device), s, device)
    model = tr.model
    model.unet.eval()
    prompts = fixed_batch(tr, s.batch)["captions"]
    f = frames_for(family, s)
    rows = []

    sample = tr.config.sample  # every sampler without CFG, then the config's sampler with its CFG
    for scheduler, guidance in [(name, 1.0) for name in model.samplers] + [(sample.scheduler, sample.guidance)]:

        def run():
            sample_latents(
                model,
                prompts,
                frames=f,
                height=s.height,
                width=s.width,
                seeds=list(range(len(prompts))),
                steps=s.sample_steps,
                guidance=guidance,
                scheduler=scheduler,
            )

        sec = time_fn(run, s.warmup, s.repeat, device)["median_s"]
        rows.append(
            {
                "family": family,
                "scheduler": scheduler,
                "guidance": guidance,
                "steps": s.sample_steps,
                "videos": len(prompts),
                "frames": f,
                "s_per_batch": sec,
                "frames_per_s": len(prompts) * f / sec,
                "denoiser_calls_per_s": s.sample_steps / sec,
            }
        )
    return rows


# ----------------------------------------------------------------------------- 6. memory

MEMORY_FRAMES = 16
# name -> (attention, gradient checkpointing, LoRA): each measured in a fresh process
MEMORY_CASES = {
    "naive": ("naive", False, False),
    "efficient_attention": ("sdpa", False, False),
    "checkpointing": ("naive", True, False),
    "both": ("sdpa", True, False),
    "both_lora": ("sdpa", True, True),
}


def bench_memory(family, data, tmp, s: Settings, device) -> list[dict]:
    """Peak memory of an SSPO step at 16 frames per MEMORY_CASES entry, each in a fresh subprocess (CPU: RSS)."""
    from videosspo.synth import make_dataset

    frames = frames_for(family, dataclasses.replace(s, frames=MEMORY_FRAMES))
    clips = make_dataset(
        tmp / f"data{frames}", n=max(2, s.batch), frames=frames, height=s.height, width=s.width, progress=False
    )
    rows = []
    for name in MEMORY_CASES:
        spec = {
            "name": name,
            "family": family,
            "data": str(clips),
            "out": str(tmp / f"mem_{name}"),
            "device": device,
            "settings": dataclasses.asdict(s),
        }
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--memory-child", json.dumps(spec)],
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        if proc.returncode:
            raise RuntimeError(f"memory case {name} failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    naive = rows[0]["sspo_step_peak_mb"]
    for row in rows:
        row["sspo_step_over_naive"] = row["sspo_step_peak_mb"] / naive
    return rows


def memory_child(spec: dict) -> dict:
    """One MEMORY_CASES entry: peaks above the settled process of the policy pass alone (forward + backward on
    winners and losers), the loser sampling, and the whole SSPO step."""
    s = Settings(**{**spec["settings"], "frames": MEMORY_FRAMES, "loser_steps": (), "loser_options": ()})
    attention, checkpointing, lora = MEMORY_CASES[spec["name"]]
    device, family = spec["device"], spec["family"]
    cfg = make_config(
        family,
        "sspo",
        s.lora_rank if lora else 0,
        Path(spec["data"]),
        Path(spec["out"]),
        s,
        device,
        **{"model.gradient_checkpointing": checkpointing},
    )
    tr = make_trainer(cfg, s, device)
    with naive_attention(tr.model.unet) if attention == "naive" else contextlib.nullcontext():
        return {
            "family": family,
            "case": spec["name"],
            "attention": attention,
            "gradient_checkpointing": checkpointing,
            "mode": f"lora{cfg.model.lora_rank}" if lora else "full",
            "frames": cfg.data.frames,
            **memory_peaks(tr, s, device),
        }


def naive_attention(denoiser) -> contextlib.AbstractContextManager:
    """Attention that materialises the b h n n matrix: diffusers' classic `AttnProcessor` where the denoiser uses
    diffusers' SDPA processor (the UNets), else torch SDPA held to its math kernel (the DiTs' own processors)."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if all(isinstance(p, AttnProcessor2_0) for p in denoiser.attn_processors.values()):
        denoiser.set_attn_processor(AttnProcessor())
        return contextlib.nullcontext()
    return sdpa_kernel(SDPBackend.MATH)


def memory_peaks(tr, s: Settings, device: str) -> dict:
    """Peak memory above the settled process of the policy pass, the loser sampling and a whole SSPO step."""
    from videosspo.losses import per_sample_error

    cfg = tr.config
    batch = fixed_batch(tr, s.batch)
    batches = repeated(batch)
    train_window(tr, batches, 0)  # settles optimizer state, gradients' first allocation, the reference copy
    x_w = tr.latents(batch, "")
    x0 = torch.cat([x_w, x_w])
    t = torch.full((len(x0),), 500, device=x0.device)
    cond = tr.model.encode_prompt(batch["captions"] * 2).float()
    with PeakMemory(device) as policy:
        per_sample_error(tr.policy.predict(x0, t, cond), x0).mean().backward()
    tr.optimizer.zero_grad(set_to_none=True)
    tr.step = cfg.loser.reuse  # a reuse window of its own: its losers are sampled, not window 0's cached ones
    with PeakMemory(device) as losers:
        tr.losers.sample(batch, 0)
    tr.step = 2 * cfg.loser.reuse  # and a fresh window for the step, whose first step samples
    with PeakMemory(device) as step:
        train_window(tr, batches, tr.step)
    return {
        "latent_shape": list(x_w.shape[1:]),
        "policy_pass_peak_mb": mib(policy.peak_delta_bytes),
        "losers_peak_mb": mib(losers.peak_delta_bytes),
        "sspo_step_peak_mb": mib(step.peak_delta_bytes),
        "step_beyond_policy_pass_mb": mib(step.peak_delta_bytes - policy.peak_delta_bytes),
        "mem_method": step.method,
    }


# ----------------------------------------------------------------------------- driver


SECTIONS = {
    "train_step": bench_train_step,
    "loser_options": bench_loser_options,
    "concat_forward": bench_concat,
    "reference_memory": bench_reference_memory,
    "loser_cost": bench_losers,
    "sampling": bench_sampling,
    "memory": bench_memory,
}


def report(result: dict) -> str:
    env, st = result["env"], result["settings"]
    parts = [
        f"videosspo bench_train  {Path(st['config']).name}  torch {env['torch']}  device {env['device']}  "
        f"threads {env['torch_threads']}  size {st['size']}  frames {st['frames']}  {st['height']}x{st['width']} px  "
        f"batch {st['batch']}  repeats {st['repeat']} (medians)"
    ]
    if "summary" in result:
        parts.append(
            table(
                result["summary"],
                [
                    "family",
                    "mode",
                    "sft_s",
                    "dpo_over_sft",
                    "sspo_over_sft",
                    "dpo_over_sft_counted",
                    "sspo_over_sft_counted",
                    "loser_share",
                    "sft_peak_mem_mb",
                    "dpo_peak_mem_mb",
                    "sspo_peak_mem_mb",
                    "sft_unet_rows_per_step",
                    "dpo_unet_rows_per_step",
                    "sspo_unet_rows_per_step",
                ],
                "SSPO/SFT and DPO/SFT at the config's settings",
            )
        )
    if "train_step" in result:
        parts.append(
            table(
                result["train_step"],
                [
                    "family",
                    "method",
                    "mode",
                    "s_per_step",
                    "losers_s",
                    "s_per_step_wo_losers",
                    "peak_mem_delta_mb",
                    "unet_calls_per_step",
                    "policy_rows_per_step",
                    "reference_rows_per_step",
                    "loser_rows_per_step",
                    "trainable_params",
                    "grad_plus_adam_mb",
                ],
                "1. training step (s/step, median; UNet rows per step)",
            )
        )
    if "loser_options" in result:
        parts.append(
            table(
                result["loser_options"],
                [
                    "family",
                    "mode",
                    "option",
                    "loser_steps",
                    "loser_guidance",
                    "loser_scheduler",
                    "loser_reuse",
                    "loser_init",
                    "loser_strength",
                    "loser_overlap",
                    "losers_s",
                    "s_per_step",
                    "sspo_over_sft",
                    "sspo_over_sft_counted",
                    "loser_rows_per_step",
                ],
                "1b. loser options: cost per optimizer step",
            )
        )
    if "concat_forward" in result:
        parts.append(
            table(
                result["concat_forward"],
                [
                    "family",
                    "batch_per_side",
                    "forward_concat_s",
                    "forward_separate_s",
                    "forward_ratio_sep_over_cat",
                    "fwd_bwd_concat_s",
                    "fwd_bwd_separate_s",
                    "fwd_bwd_ratio_sep_over_cat",
                    "max_abs_diff_error",
                    "max_abs_diff_output",
                ],
                "2. concatenated winner+loser forward (2b) vs two forwards (b)",
            )
        )
    if "reference_memory" in result:
        parts.append(
            table(
                result["reference_memory"],
                [
                    "family",
                    "mode",
                    "reference_holds",
                    "policy_unet_mb",
                    "reference_extra_bytes",
                    "snapshot_bytes",
                    "total_extra_bytes",
                    "total_extra_mb",
                    "swap_snapshot_s",
                ],
                "3. reference memory (bytes)",
            )
        )
    if "loser_cost" in result:
        by_steps = [r for fam in result["loser_cost"] for r in fam["by_steps"]]
        parts.append(
            table(
                by_steps,
                [
                    "family",
                    "loser_steps",
                    "losers_s",
                    "train_fwd_bwd_s",
                    "ratio_losers_over_train",
                    "s_per_sampler_step",
                ],
                "4. loser generation vs training forward/backward",
            )
        )
    if "memory" in result:
        parts.append(
            table(
                result["memory"],
                [
                    "family",
                    "case",
                    "mode",
                    "frames",
                    "latent_shape",
                    "policy_pass_peak_mb",
                    "losers_peak_mb",
                    "sspo_step_peak_mb",
                    "step_beyond_policy_pass_mb",
                    "sspo_step_over_naive",
                ],
                f"6. memory: peak above the settled process, SSPO step at {MEMORY_FRAMES} frames, or the next count "
                "the VAE takes (fresh process each)",
            )
        )
    if "sampling" in result:
        parts.append(
            table(
                result["sampling"],
                ["family", "scheduler", "guidance", "steps", "videos", "frames", "s_per_batch", "frames_per_s"],
                "5. sampling throughput",
            )
        )
    return "\n\n".join(parts)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n", 1)[1],
    )
    p.add_argument(
        "--quick", action="store_true", help="small shapes and repeats (never other settings): < 2 min on 2 CPU cores"
    )
    p.add_argument(
        "--config",
        default=str(ROOT / "configs" / "animatediff_sspo.yaml"),
        help="the YAML config whose settings are measured (its model is replaced by the tiny one)",
    )
    p.add_argument(
        "--family",
        nargs="+",
        choices=[*FAMILIES, "all"],
        help="families to measure at the config's settings (default: the config's model.family)",
    )
    p.add_argument("--size", default="tiny", choices=["tiny", "medium"])
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON output file")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (default: 1 with --quick, else torch's default). On a shared machine "
        "more than one intra-op thread makes steps erratic (10-30x outliers when another process "
        "competes for the cores)",
    )
    p.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    p.add_argument("--frames", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--repeat", type=int)
    p.add_argument("--warmup", type=int)
    p.add_argument("--lora-rank", dest="lora_rank", type=int)
    p.add_argument("--sample-steps", dest="sample_steps", type=int)
    p.add_argument("--loser-steps", dest="loser_steps", type=int, nargs="+")
    p.add_argument("--memory-child", dest="memory_child", help=argparse.SUPPRESS)
    p.add_argument("--loser-options", dest="loser_options", nargs="+", help=f"subset of: {', '.join(LOSER_OPTIONS)}")
    return p.parse_args(argv)


def _quiet():
    import diffusers
    import transformers

    transformers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    logging.getLogger("accelerate").setLevel(logging.ERROR)
    logging.getLogger("videosspo").setLevel(logging.ERROR)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.memory_child:
        torch.set_num_threads(1)
        _quiet()
        print(json.dumps(memory_child(json.loads(args.memory_child))))
        return {}
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible")
    threads = args.threads or (1 if args.quick else None)
    if threads:
        torch.set_num_threads(threads)
    _quiet()
    s = settings_from_args(args)
    families = families_for(args.family or [base_config(s).model.family], s)
    result: dict = {"env": environment(args.device), "settings": dataclasses.asdict(s), "families": families}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        tmp = Path(tmp)
        from videosspo.synth import make_dataset

        # Paired clips (dpo needs losers); at least as many clips as the batch.
        data = make_dataset(
            tmp / "data",
            n=max(2, s.batch),
            frames=max(frames_for(f, s) for f in families),
            height=s.height,
            width=s.width,
            paired=True,
            progress=False,
        )
        for name in args.sections:
            t0 = time.perf_counter()
            out = [SECTIONS[name](family, data, tmp, s, args.device) for family in families]
            result[name] = [r for rows in out for r in rows] if isinstance(out[0], list) else out
            print(f"[{name}: {time.perf_counter() - t0:.1f} s]", file=sys.stderr, flush=True)
        if "train_step" in result:
            result["summary"] = step_summary(result["train_step"])
    result["seconds"] = time.perf_counter() - t_start
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    print(f"\nwrote {out_path} ({result['seconds']:.1f} s)")
    return result


if __name__ == "__main__":
    main()
