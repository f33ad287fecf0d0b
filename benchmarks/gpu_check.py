"""The GPU check: step time and peak memory of real-size architectures, with the estimator's prediction beside each.

Run it first on a lent GPU (at most ~8 minutes on one H100; `--budget-s` stops starting new cases past it):

    python benchmarks/gpu_check.py                  # -> benchmarks/results/gpu/gpu_check_<device>.json + .md
    python benchmarks/gpu_check.py --tiny           # the tiny families on CPU in seconds (the test suite runs this)

Architectures (random weights, built on the meta device and filled on the GPU: no download): AnimateDiff's UNet
(SD 1.5 + motion adapter v1-5-2) at 16x512x512, Wan 2.1 1.3B at 33x480x832, Wan 2.1 14B at 33x480x832 with
fp8 + block swap (+ offloaded checkpoints: docs/low-memory.md's headline). Per case: SFT / DPO / SSPO steps of the denoiser alone (LoRA rank 32, bf16 autocast, AdamW):
SSPO's loser sampling (`LOSER_STEPS` no-grad passes, CFG batch) and reference pass (the adapter swap), DPO's
reference pass, then the policy forward on winners + losers, backward and update. Text encoder and VAE are not
built (the estimate beside each row leaves them out too). A case that fails (out of memory, xformers missing)
is recorded with its error; the next one runs.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_common import PeakMemory, environment, table
from models.architectures import ARCHITECTURES
from models.lora import POLICY, REFERENCE, set_adapter
from videosspo.config import load_config
from videosspo.memory import GB, denoiser_for, estimate, trace_activations

OUT = Path(__file__).resolve().parent / "results" / "gpu"
LOSER_STEPS = 2  # loser-sampler passes per SSPO step in this check (a run uses loser.steps, 8-50)
LORA_RANK = 32


@dataclass(frozen=True)
class Case:
    arch: str  # a `videosspo.memory.ARCHITECTURES` name, or "tiny-<family>"
    size: tuple  # frames, height, width
    method: str = "sspo"
    attention: str = "sdpa"
    checkpointing: bool = True
    fp8: bool = False
    swap: int = 0
    offload: bool = False  # model.offload_checkpoints

    @property
    def name(self) -> str:
        return (
            f"{self.arch} {self.method} {self.attention} ckpt={int(self.checkpointing)} fp8={int(self.fp8)} "
            f"swap={self.swap}" + (" offload" if self.offload else "")
        )


def cases(tiny: bool) -> list[Case]:
    """Per architecture, the plain cases first, then fp8 (irreversible on a built model), then block swap."""
    if tiny:  # every code path once, on the tiny Wan
        size = (5, 16, 16)
        return [
            Case("tiny-wan", size, "sft", "sdpa", False),
            Case("tiny-wan", size, "dpo", "sdpa", True),
            Case("tiny-wan", size, "sspo", "sdpa", True),
            Case("tiny-wan", size, "sspo", "xformers", True),
            Case("tiny-wan", size, "sspo", "sdpa", True, True),
            Case("tiny-wan", size, "sspo", "sdpa", True, True, 1),
            Case("tiny-wan", size, "sspo", "sdpa", True, True, 1, True),
        ]
    out = []
    for arch, size in (("animatediff-v1-5-2", (16, 512, 512)), ("wan2.1-1.3b", (33, 480, 832))):
        out += [
            Case(arch, size, m, a, ck)
            for a in ("sdpa", "xformers")
            for m in ("sft", "dpo", "sspo")
            for ck in (True, False)
        ]
        out += [Case(arch, size, "sspo", "sdpa", True, False, 0, True)]
        out += [Case(arch, size, m, "sdpa", True, True) for m in ("sft", "sspo")]
        out += [
            Case(arch, size, "sspo", "sdpa", True, True, n)
            for n in ((4, 8) if arch == "animatediff-v1-5-2" else (10, 20))
        ]
    out += [Case("wan2.1-14b", (33, 480, 832), "sspo", "sdpa", True, True, 36, True)]  # docs/low-memory.md's headline
    out += [Case("wan2.1-14b", (33, 480, 832), "sspo", "sdpa", True, True, n) for n in (30, 20)]
    return out


def config_of(case: Case):
    family = case.arch.removeprefix("tiny-") if case.arch.startswith("tiny-") else None
    base = (
        ["--model.family", family, "--model.pretrained", "null"]
        if family
        else ["--model.family", ARCHITECTURES[case.arch]["family"], "--model.pretrained", case.arch]
    )
    f, h, w = case.size
    return load_config(
        None,
        [
            *base,
            "--model.lora_rank",
            str(4 if family else LORA_RANK),
            "--method.name",
            case.method,
            "--data.frames",
            str(f),
            "--data.height",
            str(h),
            "--data.width",
            str(w),
            "--model.gradient_checkpointing",
            str(case.checkpointing).lower(),
            "--model.fp8_base",
            str(case.fp8).lower(),
            "--model.blocks_to_swap",
            str(case.swap),
            "--model.offload_checkpoints",
            str(case.offload).lower(),
            "--train.mixed_precision",
            "no" if family else "bf16",
            "--loser.guidance",
            "5.0",
            "--optim.batch_size",
            "1",
        ],
    )


class Built:
    """One architecture on the device: the meta-built denoiser materialised with random weights, its LoRA."""

    def __init__(self, case: Case, device: torch.device):
        from models import build_model
        from models.lora import add_lora

        self.device, cfg = device, config_of(case)
        self.meta = denoiser_for(cfg)
        self.acts = {}  # compute dtype -> traced activations, reused by every case of the architecture
        if case.arch.startswith("tiny-"):
            model = build_model(cfg.model)
            unet = model.unet.requires_grad_(False)
            add_lora(unet, cfg.model.lora_rank, None, model.lora_scope)
        else:
            unet = self._random(cfg)
        self.unet = unet.to(device)
        self.view = object.__new__(self.meta.family)
        self.view.unet = self.unet
        self.fp8 = False
        self.swap = None

    def _random(self, cfg):
        """The architecture with its parameters allocated on the device and filled with N(0, 0.02) (1-D: norms 1,
        biases 0), buffers (rotary tables) as the constructor made them."""
        from accelerate import init_empty_weights

        from models.lora import add_lora

        with init_empty_weights(include_buffers=False):
            unet = type(self.meta.module).from_config(dict(self.meta.module.config))
        for module in unet.modules():
            for name, p in list(module._parameters.items()):
                if p is None:
                    continue
                data = torch.empty(p.shape, device=self.device)
                data.normal_(0, 0.02) if p.ndim > 1 else data.fill_(
                    1.0 if "norm" in type(module).__name__.lower() else 0.0
                )
                module._parameters[name] = torch.nn.Parameter(data, requires_grad=False)
        add_lora(unet, cfg.model.lora_rank, None, self.meta.family.lora_scope.fget(self.meta.family))
        return unet

    def apply(self, case: Case) -> None:
        """The case's switches: attention, checkpointing, fp8 (once), block swap (re-installed per count), offloaded
        checkpoints."""
        from models.fp8 import enable_fp8_storage
        from models.offload import CheckpointOffload, enable_block_swap

        if case.attention == "sdpa" and getattr(self, "xformers", False):  # back from an xformers case
            self.unet.disable_xformers_memory_efficient_attention()
        self.xformers = self.view.enable_attention(case.attention) == "xformers"
        from models.families import _checkpointed_forward

        if case.checkpointing:
            self.view.enable_gradient_checkpointing()
        else:
            self.unet.disable_gradient_checkpointing()
            for (
                m
            ) in self.unet.modules():  # the families' own checkpointed forwards (models.families.checkpoint_modules)
                if getattr(m.__dict__.get("forward"), "__func__", None) is _checkpointed_forward:
                    del m.forward
        if case.fp8 and not self.fp8:
            enable_fp8_storage(self.unet)
            self.fp8 = True
        if self.swap is not None:
            self.swap.remove()
            self.swap = None
        self.view.checkpoint_offload = CheckpointOffload(self.unet) if case.offload else None
        if case.swap:
            self.swap = enable_block_swap(self.unet, case.swap, self.device)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def step_fn(self, case: Case, cfg):
        """One step of `case.method` (see the module docstring) as a closure."""
        c, f, h, w = self.meta.latent
        b = cfg.optim.batch_size
        pairs = 1 if case.method == "sft" else 2
        params = [p for n, p in self.unet.named_parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-5)
        gen = torch.Generator(self.device).manual_seed(0)
        x = torch.randn(b * pairs, c, f, h, w, device=self.device, generator=gen)
        cond = torch.randn(b * pairs, *self.meta.text, device=self.device, generator=gen)
        t = torch.full((b * pairs,), 500.0, device=self.device)
        autocast = torch.autocast(self.device.type, torch.bfloat16, enabled=cfg.train.mixed_precision == "bf16")

        def step():
            with autocast:
                if case.method == "sspo":
                    with torch.no_grad():
                        set_adapter(self.unet, REFERENCE)
                        z = x[:b].repeat(2, 1, 1, 1, 1)  # CFG: conditional and unconditional halves
                        for _ in range(LOSER_STEPS):
                            z = z - 0.1 * self.view._denoise(z, t[:1].repeat(2 * b), cond[:1].repeat(2 * b, 1, 1))
                        set_adapter(self.unet, POLICY)
                if case.method != "sft":
                    with torch.no_grad():
                        set_adapter(self.unet, REFERENCE)
                        ref = self.view._denoise(x, t, cond)
                        set_adapter(self.unet, POLICY)
                out = self.view.predict(x, t, cond)  # (predict: with model.offload_checkpoints' hooks)
                loss = (out.float() - x).square().mean() + (
                    0 if case.method == "sft" else 1e-3 * (out.float() - ref.float()).square().mean()
                )
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    def predicted_gb(self, cfg) -> float:
        """The estimator's peak for this denoiser-only step (text encoder and VAE rows left out)."""
        from videosspo.memory import compute_dtype

        dtype = compute_dtype(cfg)
        if dtype not in self.acts:
            self.acts[dtype] = trace_activations(self.meta, dtype)
        est = estimate(cfg, self.meta, self.acts[dtype])
        encoders = sum(v for k, v in est.rows.items() if k.startswith(("text encoder", "VAE")))
        return (est.peak - encoders) / GB


def run_case(built: Built, case: Case, repeat: int) -> dict:
    cfg = config_of(case)
    row = {
        "case": case.name,
        "arch": case.arch,
        "method": case.method,
        "attention": case.attention,
        "checkpointing": case.checkpointing,
        "fp8": case.fp8,
        "blocks_to_swap": case.swap,
        "offload_checkpoints": case.offload,
        "size": "x".join(map(str, case.size)),
    }
    try:
        row["predicted_gb"] = built.predicted_gb(cfg)
        built.apply(case)
        step = built.step_fn(case, cfg)
        step()  # warm-up (cuDNN/kernels, the optimizer state)
        sync(built.device)
        with PeakMemory(built.device) as peak:
            start = time.perf_counter()
            for _ in range(repeat):
                step()
            sync(built.device)
            row["step_s"] = round((time.perf_counter() - start) / repeat, 4)
        # CUDA: the peak of the timed steps (PeakMemory reset the statistics), weights and optimizer state included
        row["peak_gb"] = round(torch.cuda.max_memory_allocated() / GB, 3) if built.device.type == "cuda" else None
        row["memory_method"] = peak.method
        if row["peak_gb"]:
            row["predicted/measured"] = round(row["predicted_gb"] / row["peak_gb"], 3)
        row["status"] = "ok"
    except torch.cuda.OutOfMemoryError:
        row["status"] = "OOM"
    except Exception as e:  # noqa: BLE001  recorded, not fatal: the next case runs
        row["status"] = f"error: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
    for p in built.unet.parameters():
        p.grad = None
    gc.collect()
    if built.device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny", action="store_true", help="the tiny families on CPU (seconds): keeps this script alive"
    )
    parser.add_argument("--out", default=str(OUT), help="folder for the JSON and the table")
    parser.add_argument("--budget-s", type=float, default=420.0, help="start no new case past this many seconds")
    parser.add_argument("--repeat", type=int, default=2, help="timed steps per case (after one warm-up)")
    parser.add_argument("--only", default="", help="a regular expression over the case names")
    args = parser.parse_args(argv)
    if args.tiny:
        args.repeat = 1
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    start, rows, built = time.perf_counter(), [], None
    for case in cases(args.tiny):
        if not re.search(args.only, case.name):
            continue
        if time.perf_counter() - start > args.budget_s:
            rows.append({"case": case.name, "status": f"skipped: past --budget-s {args.budget_s:g}"})
            continue
        if built is None or built.arch != case.arch:
            built = None
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            try:
                built = Built(case, device)
                built.arch = case.arch
            except torch.cuda.OutOfMemoryError:
                rows.append({"case": case.name, "status": "OOM building the model"})
                continue
        rows.append(run_case(built, case, args.repeat))
        print(json.dumps(rows[-1]), flush=True)
    env = environment(str(device))
    name = env.get("cuda_device", "cpu") + ("-tiny" if args.tiny else "")
    slug = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result = {
        "device": name,
        "command": command.strip(),
        "environment": env,
        "loser_steps": LOSER_STEPS,
        "lora_rank": LORA_RANK,
        "total_s": round(time.perf_counter() - start, 1),
        "cases": rows,
    }
    (out / f"gpu_check_{slug}.json").write_text(json.dumps(result, indent=2))
    columns = ["case", "size", "status", "step_s", "peak_gb", "predicted_gb", "predicted/measured"]
    (out / f"gpu_check_{slug}.md").write_text(
        f"# GPU check on {name}\n\n`{result['command']}`\n\n" + table(rows, columns) + "\n"
    )
    return result


if __name__ == "__main__":
    main()
