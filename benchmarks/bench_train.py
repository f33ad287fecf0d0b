"""Training-side benchmarks of videosspo, all within one run (compare ratios, not absolute numbers).

    python benchmarks/bench_train.py --quick                       # < 60 s on 2 CPU cores
    python benchmarks/bench_train.py --family modelscope --size medium --out /tmp/bench.json
    python benchmarks/bench_train.py --family all --device cuda

Sections (each a key of the JSON and a table on stdout):
  train_step        s/step (median) and peak memory for sft / dpo / sspo x LoRA / full fine-tuning,
                    through `Trainer.loss` + backward + AdamW step on a fixed batch
  concat_forward    one `predict` at batch 2b (winners + losers, as `Trainer.loss` does) vs two at
                    batch b: time ratio (forward, and forward + backward) and max |difference| of the
                    per-sample errors and of the raw outputs
  reference_memory  bytes the reference costs: LoRA adapter swap (a second adapter slot + the
                    adapter snapshot) vs full fine-tuning (a reference UNet copy + the state-dict snapshot),
                    and the time to switch the reference to another replay snapshot
  loser_cost        `Trainer.sample_losers` time vs the training forward/backward, per loser.steps,
                    and the per-step cost with loser.reuse (LoserCache) amortisation
  sampling          `sample_latents` throughput (frames/s) per scheduler

Models are the tiny random-weight ones built from the configs (`--size tiny`), or a wider UNet
(`--size medium`: block_out_channels (64, 128, 256), built from the same diffusers classes).
Timings: warm-up, then `--repeat` repeats, median; A/B comparisons interleave their repeats.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.bench_common import (PeakMemory, sync, environment, mib, module_bytes, summarize,  # noqa: E402
                                     table, time_fn, time_pair)

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "bench_train.json"
FAMILIES = ("animatediff", "modelscope", "sd")
METHODS = ("sft", "dpo", "sspo")
SCHEDULERS = ("ddim", "ddpm", "euler", "dpm++")
MEDIUM_CHANNELS = (64, 128, 256)


@dataclasses.dataclass
class Settings:
    frames: int = 8
    height: int = 32          # pixels; the tiny VAE has factor 2 -> 16x16 latents
    width: int = 32
    batch: int = 2            # winners per micro-batch (the policy forward sees 2x this for dpo/sspo)
    lora_rank: int = 4
    warmup: int = 1
    repeat: int = 5
    loser_steps: tuple[int, ...] = (4, 8, 20)
    train_loser_steps: int = 8    # loser.steps inside the sspo training-step timing
    reuse: tuple[int, ...] = (1, 2, 4)
    sample_steps: int = 10
    size: str = "tiny"


def settings_from_args(args) -> Settings:
    s = Settings()
    if args.quick:
        s = Settings(frames=4, height=16, width=16, repeat=3, loser_steps=(4, 8), reuse=(1, 2, 4), sample_steps=4,
                     train_loser_steps=4)
    if args.size == "medium":
        s.size = "medium"
    for key in ("frames", "height", "width", "batch", "repeat", "warmup", "lora_rank", "sample_steps"):
        value = getattr(args, key.replace("-", "_"))
        if value is not None:
            setattr(s, key, value)
    if args.loser_steps:
        s.loser_steps = tuple(args.loser_steps)
        s.train_loser_steps = min(s.train_loser_steps, max(s.loser_steps))
    if args.reuse:
        s.reuse = tuple(args.reuse)
    return s


# ----------------------------------------------------------------------------- model & trainer plumbing


def _medium_unet(family: str):
    """A wider UNet (block_out_channels (64, 128, 256)) of the family's diffusers class."""
    from diffusers import MotionAdapter, UNet2DConditionModel, UNet3DConditionModel, UNetMotionModel

    def build(cls, in_channels, cross_attention_dim):
        common = dict(sample_size=16, in_channels=in_channels, out_channels=in_channels,
                      block_out_channels=MEDIUM_CHANNELS, layers_per_block=1, norm_num_groups=8,
                      cross_attention_dim=cross_attention_dim, attention_head_dim=8)
        if family == "modelscope":
            return UNet3DConditionModel(**common,
                                        down_block_types=("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
                                        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"))
        unet2d = UNet2DConditionModel(**common,
                                      down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                                      up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))
        if family == "sd":
            return unet2d
        adapter = MotionAdapter(block_out_channels=MEDIUM_CHANNELS, motion_layers_per_block=1, motion_norm_num_groups=8,
                                motion_num_attention_heads=4, motion_max_seq_length=32)
        return UNetMotionModel.from_unet2d(unet2d, adapter)

    return build


@contextlib.contextmanager
def model_size(family: str, size: str):
    """While active, `build_model` of a tiny `family` model builds the `size` UNet (tiny: unchanged)."""
    if size == "tiny":
        yield
        return
    from models import FAMILIES as MODEL_FAMILIES

    cls = MODEL_FAMILIES[family]
    saved = cls.__dict__.get("build_tiny_unet")
    cls.build_tiny_unet = classmethod(_medium_unet(family))
    try:
        yield
    finally:
        if saved is None:
            del cls.build_tiny_unet
        else:
            cls.build_tiny_unet = saved


def frames_for(family: str, s: Settings) -> int:
    return 1 if family == "sd" else s.frames


def make_config(family: str, method: str, lora_rank: int, data: Path, out: Path, s: Settings, device: str, **extra):
    from videosspo.config import load_config

    overrides = {
        "model": {"lora_rank": lora_rank, "attention": "sdpa" if device == "cpu" else "auto"},
        "data": {"path": str(data), "synth_if_missing": 0, "frames": frames_for(family, s), "height": s.height,
                 "width": s.width, "num_workers": 0},
        "loser": {"steps": s.train_loser_steps, "guidance": 1.0, "reuse": 1},
        "replay": {"interval": 10**6},
        "optim": {"batch_size": s.batch, "warmup_steps": 0, "lr": 1e-5},
        "train": {"output_dir": str(out), "max_steps": 10**6, "checkpoint_every": 0},
    }
    for key, value in extra.items():
        section, name = key.split(".")
        overrides.setdefault(section, {})[name] = value
    return load_config(ROOT / "configs" / f"tiny_{family}_{method}.yaml", overrides)


def make_trainer(cfg, s: Settings, device: str):
    from accelerate import Accelerator

    from videosspo.trainer import Trainer

    with model_size(cfg.model.family, s.size):
        return Trainer(cfg, Accelerator(cpu=device == "cpu", mixed_precision="no"))


def fixed_batch(trainer, n: int) -> dict:
    """A micro-batch as the trainer's loader yields it: {pixels, captions, indices, positions[, loser_pixels]}."""
    items = [trainer.data.get(i % len(trainer.data), seed=i) for i in range(n)]
    batch = {"pixels": torch.stack([b["pixels"] for b in items]), "captions": [b["caption"] for b in items],
             "indices": list(range(n)), "positions": list(range(n))}
    if all("loser_pixels" in b for b in items):
        batch["loser_pixels"] = torch.stack([b["loser_pixels"] for b in items])
    return batch


def train_step(trainer, batch) -> dict:
    """One optimizer step on a fixed batch: `Trainer.loss`, backward, AdamW step."""
    loss, stats = trainer.loss(batch)
    trainer.accelerator.backward(loss)
    trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=True)
    return stats


# ----------------------------------------------------------------------------- 1. training step


def bench_train_step(family, data, tmp, s: Settings, device) -> list[dict]:
    """Every (mode, method) trainer is built first, then their timed steps run round-robin (drift hits all)."""
    cases = []
    for lora in (s.lora_rank, 0):
        for method in METHODS:
            tr = make_trainer(make_config(family, method, lora, data, tmp / f"{method}_{lora}", s, device), s, device)
            cases.append({"lora": lora, "method": method, "trainer": tr, "batch": fixed_batch(tr, s.batch),
                          "times": [], "losers": [], "peak": 0, "mem_method": ""})
    for case in cases:
        for _ in range(s.warmup):
            train_step(case["trainer"], case["batch"])
    for _ in range(s.repeat):
        for case in cases:
            with PeakMemory(device) as mem:
                sync(device)
                t0 = time.perf_counter()
                stats = train_step(case["trainer"], case["batch"])
                sync(device)
                case["times"].append(time.perf_counter() - t0)
            case["peak"] = max(case["peak"], mem.peak_delta_bytes)
            case["mem_method"] = mem.method
            if "time/losers_s" in stats:
                case["losers"].append(stats["time/losers_s"])
    rows = []
    for case in cases:
        tr, lora = case["trainer"], case["lora"]
        timing = summarize(case["times"])
        params = list(tr.model.unet.parameters())
        trainable = sum(p.numel() for p in params if p.requires_grad)
        opt_state = sum(t.numel() * t.element_size() for st in tr.optimizer.state.values()
                        for t in st.values() if torch.is_tensor(t) and t.ndim > 0)
        row = {"family": family, "method": case["method"], "mode": f"lora{lora}" if lora else "full",
               "s_per_step": timing["median_s"], "min_s": timing["min_s"], "max_s": timing["max_s"],
               "repeats": timing["n"], "peak_mem_delta_mb": mib(case["peak"]), "mem_method": case["mem_method"],
               "unet_params": sum(p.numel() for p in params), "trainable_params": trainable,
               "grad_plus_adam_mb": mib(trainable * 4 + opt_state)}
        if case["losers"]:
            losers = summarize(case["losers"])["median_s"]
            row["losers_s"] = losers
            row["s_per_step_wo_losers"] = max(timing["median_s"] - losers, 1e-9)
        rows.append(row)
    cases.clear()
    return rows


# ----------------------------------------------------------------------------- 2. concatenated forward


def bench_concat(family, data, tmp, s: Settings, device) -> dict:
    """One `predict` at 2b vs two at b, on the policy network the trainer uses (full fine-tuning)."""
    from videosspo.losses import per_sample_error

    tr = make_trainer(make_config(family, "sspo", 0, data, tmp / "concat", s, device), s, device)
    model, b = tr.model, s.batch
    g = torch.Generator().manual_seed(0)
    shape = model.latent_shape(frames_for(family, s), s.height, s.width)
    x0 = torch.randn((2 * b, *shape), generator=g).to(device)
    noise = torch.randn((b, *shape), generator=g).to(device).repeat(2, 1, 1, 1, 1)
    t = torch.randint(0, model.scheduler.config.num_train_timesteps, (b,), generator=g).to(device).repeat(2)
    cond = model.encode_prompt(fixed_batch(tr, b)["captions"]).float().repeat(2, 1, 1)
    x_t = model.scheduler.add_noise(x0, noise, t)
    target = noise

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
    return {"family": family, "batch_per_side": b, "latent_shape": list(shape),
            "forward_concat_s": f_cat["median_s"], "forward_separate_s": f_sep["median_s"],
            "forward_ratio_sep_over_cat": f_sep["median_s"] / f_cat["median_s"],
            "fwd_bwd_concat_s": fb_c["median_s"], "fwd_bwd_separate_s": fb_s["median_s"],
            "fwd_bwd_ratio_sep_over_cat": fb_s["median_s"] / fb_c["median_s"],
            "max_abs_diff_error": err_diff, "max_abs_diff_output": out_diff}


# ----------------------------------------------------------------------------- 3. reference memory


def bench_reference_memory(family, data, tmp, s: Settings, device) -> list[dict]:
    from videosspo.reference import REFERENCE

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
        else:                 # full fine-tuning: a second UNet
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
        rows.append({"family": family, "mode": f"lora{lora}" if lora else "full", "reference_holds": held,
                     "swap_snapshot_s": swap_s,
                     "policy_unet_mb": mib(policy_bytes), "reference_extra_mb": mib(slot),
                     "snapshot_mb": mib(snapshot_bytes), "total_extra_mb": mib(slot + snapshot_bytes),
                     "reference_extra_bytes": slot, "snapshot_bytes": snapshot_bytes,
                     "total_extra_bytes": slot + snapshot_bytes,
                     "first_reference_peak_mem_delta_mb": mib(mem.peak_delta_bytes)})
        del tr, unet, ref
    return rows


# ----------------------------------------------------------------------------- 4. loser cost


def bench_losers(family, data, tmp, s: Settings, device) -> dict:
    from videosspo.trainer import LoserCache

    tr = make_trainer(make_config(family, "sspo", 0, data, tmp / "losers", s, device), s, device)
    batch = fixed_batch(tr, s.batch)
    base_cfg = tr.config
    # The training forward/backward: the sspo step with its losers served from the cache (reuse huge).
    tr.losers = LoserCache(10**9)
    train_step(tr, batch)
    fb = time_fn(lambda: train_step(tr, batch), s.warmup, s.repeat, device)["median_s"]

    rows = []
    for steps in s.loser_steps:
        tr.config = dataclasses.replace(base_cfg, loser=dataclasses.replace(base_cfg.loser, steps=steps, reuse=1))
        tr.losers = LoserCache(1)
        gen = time_fn(lambda: tr.sample_losers(batch, 0), s.warmup, s.repeat, device)["median_s"]
        rows.append({"family": family, "loser_steps": steps, "losers_s": gen, "train_fwd_bwd_s": fb,
                     "ratio_losers_over_train": gen / fb, "s_per_sampler_step": gen / steps,
                     "sspo_step_s_est": gen + fb})

    reuse_rows = []
    steps = s.train_loser_steps
    tr.config = dataclasses.replace(base_cfg, loser=dataclasses.replace(base_cfg.loser, steps=steps))
    tr.sample_losers(batch, 0)  # warm
    for reuse in s.reuse:
        tr.config = dataclasses.replace(base_cfg, loser=dataclasses.replace(base_cfg.loser, steps=steps, reuse=reuse))
        calls = reuse * max(1, math.ceil(s.repeat / reuse))
        per_call = []
        for _ in range(max(1, s.repeat // 2)):
            tr.losers = LoserCache(reuse)
            t0 = time.perf_counter()
            for _ in range(calls):
                tr.sample_losers(batch, 0)
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize()
            per_call.append((time.perf_counter() - t0) / calls)
        per_step = summarize(per_call)["median_s"]
        reuse_rows.append({"family": family, "loser_steps": steps, "reuse": reuse, "losers_s_per_step": per_step,
                           "ratio_losers_over_train": per_step / fb, "sspo_step_s_est": per_step + fb})
    first = reuse_rows[0]["losers_s_per_step"]
    for r in reuse_rows:
        r["speedup_vs_reuse1"] = first / r["losers_s_per_step"]
    return {"by_steps": rows, "by_reuse": reuse_rows}


# ----------------------------------------------------------------------------- 5. sampling


def bench_sampling(family, data, tmp, s: Settings, device) -> list[dict]:
    from videosspo.sampling import sample_latents

    tr = make_trainer(make_config(family, "sft", 0, data, tmp / "sampling", s, device), s, device)
    model = tr.model
    model.unet.eval()
    prompts = fixed_batch(tr, s.batch)["captions"]
    f = frames_for(family, s)
    rows = []
    for scheduler, guidance in [(name, 1.0) for name in SCHEDULERS] + [("ddim", 7.5)]:
        def run():
            sample_latents(model, prompts, frames=f, height=s.height, width=s.width, seeds=list(range(len(prompts))),
                           steps=s.sample_steps, guidance=guidance, scheduler=scheduler)

        sec = time_fn(run, s.warmup, s.repeat, device)["median_s"]
        rows.append({"family": family, "scheduler": scheduler, "guidance": guidance, "steps": s.sample_steps,
                     "videos": len(prompts), "frames": f, "s_per_batch": sec, "frames_per_s": len(prompts) * f / sec,
                     "denoiser_calls_per_s": s.sample_steps / sec})
    return rows


# ----------------------------------------------------------------------------- driver


SECTIONS = {"train_step": bench_train_step, "concat_forward": bench_concat, "reference_memory": bench_reference_memory,
            "loser_cost": bench_losers, "sampling": bench_sampling}


def report(result: dict) -> str:
    env = result["env"]
    parts = [f"videosspo bench_train  torch {env['torch']}  device {env['device']}  threads {env['torch_threads']}  "
             f"size {result['settings']['size']}  frames {result['settings']['frames']}  "
             f"{result['settings']['height']}x{result['settings']['width']} px  batch {result['settings']['batch']}  "
             f"repeats {result['settings']['repeat']} (medians)"]
    if "train_step" in result:
        parts.append(table(result["train_step"], ["family", "method", "mode", "s_per_step", "losers_s",
                                                  "s_per_step_wo_losers", "peak_mem_delta_mb", "trainable_params",
                                                  "grad_plus_adam_mb"], "1. training step (s/step, median)"))
    if "concat_forward" in result:
        parts.append(table(result["concat_forward"], ["family", "batch_per_side", "forward_concat_s",
                                                      "forward_separate_s", "forward_ratio_sep_over_cat",
                                                      "fwd_bwd_concat_s", "fwd_bwd_separate_s",
                                                      "fwd_bwd_ratio_sep_over_cat", "max_abs_diff_error",
                                                      "max_abs_diff_output"],
                           "2. concatenated winner+loser forward (2b) vs two forwards (b)"))
    if "reference_memory" in result:
        parts.append(table(result["reference_memory"], ["family", "mode", "reference_holds", "policy_unet_mb",
                                                        "reference_extra_bytes", "snapshot_bytes", "total_extra_bytes",
                                                        "total_extra_mb", "swap_snapshot_s"], "3. reference memory (bytes)"))
    if "loser_cost" in result:
        by_steps = [r for fam in result["loser_cost"] for r in fam["by_steps"]]
        by_reuse = [r for fam in result["loser_cost"] for r in fam["by_reuse"]]
        parts.append(table(by_steps, ["family", "loser_steps", "losers_s", "train_fwd_bwd_s", "ratio_losers_over_train",
                                      "s_per_sampler_step"], "4a. loser generation vs training forward/backward"))
        parts.append(table(by_reuse, ["family", "loser_steps", "reuse", "losers_s_per_step", "ratio_losers_over_train",
                                      "speedup_vs_reuse1", "sspo_step_s_est"], "4b. loser.reuse amortisation"))
    if "sampling" in result:
        parts.append(table(result["sampling"], ["family", "scheduler", "guidance", "steps", "videos", "frames",
                                                "s_per_batch", "frames_per_s"], "5. sampling throughput"))
    return "\n\n".join(parts)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 1)[1])
    p.add_argument("--quick", action="store_true", help="small settings: < 60 s on 2 CPU cores")
    p.add_argument("--family", default="animatediff", choices=[*FAMILIES, "all"])
    p.add_argument("--size", default="tiny", choices=["tiny", "medium"])
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON output file")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: 1 with --quick, else torch's default). On a shared machine "
                        "more than one intra-op thread makes steps erratic (10-30x outliers when another process "
                        "competes for the cores)")
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
    p.add_argument("--reuse", type=int, nargs="+")
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
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible")
    threads = args.threads or (1 if args.quick else None)
    if threads:
        torch.set_num_threads(threads)
    _quiet()
    s = settings_from_args(args)
    families = list(FAMILIES) if args.family == "all" else [args.family]
    result: dict = {"env": environment(args.device), "settings": dataclasses.asdict(s), "families": families}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        tmp = Path(tmp)
        from videosspo.synth import make_dataset

        # Paired clips (dpo needs losers); at least as many clips as the batch.
        data = make_dataset(tmp / "data", n=max(2, s.batch), frames=s.frames, height=s.height, width=s.width,
                            paired=True, progress=False)
        for name in args.sections:
            t0 = time.perf_counter()
            out = [SECTIONS[name](family, data, tmp, s, args.device) for family in families]
            result[name] = [r for rows in out for r in rows] if isinstance(out[0], list) else out
            print(f"[{name}: {time.perf_counter() - t0:.1f} s]", file=sys.stderr, flush=True)
    result["seconds"] = time.perf_counter() - t_start
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    print(f"\nwrote {out_path} ({result['seconds']:.1f} s)")
    return result


if __name__ == "__main__":
    main()
