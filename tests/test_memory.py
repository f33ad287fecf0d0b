"""The memory estimator (videosspo/memory.py, `videosspo estimate`) against hand counts and measured CPU peaks, and
the GPU check (benchmarks/gpu_check.py) at tiny sizes so that it never rots."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch
from diffusers import WanTransformer3DModel

from models.families import Wan
from models.fp8 import enable_fp8_storage
from models.lora import add_lora
from videosspo.cli import main
from videosspo.config import load_config
from videosspo.memory import (
    OVERHEAD_GB,
    Denoiser,
    cpu_peak_bytes,
    denoiser_for,
    estimate,
    fitting_switches,
    trace_activations,
)

LAST: dict = {}  # the last validation's numbers (benchmarks/memory_validation.py writes them down)
MEDIUM_WAN = {
    "attention_head_dim": 32,
    "cross_attn_norm": True,
    "eps": 1e-6,
    "ffn_dim": 512,
    "freq_dim": 64,
    "in_channels": 16,
    "num_attention_heads": 4,
    "num_layers": 3,
    "out_channels": 16,
    "patch_size": (1, 2, 2),
    "qk_norm": "rms_norm_across_heads",
    "rope_max_seq_len": 1024,
    "text_dim": 256,
}


def test_cpu_peak_counts_what_torch_allocates():
    def fn():
        a = torch.ones(1000, 1000)  # 4 MB
        b = torch.ones(1000, 1000)  # 8 MB live
        del a, b
        torch.ones(500, 1000)  # 2 MB

    assert cpu_peak_bytes(fn) == 8_000_000


def outside_torch(monkeypatch) -> None:
    """`CheckpointOffload`'s host copies kept in numpy memory, which torch's profiler does not see, and brought back
    as torch tensors: on CPU the measured peak is then what an accelerator would hold (exact values)."""
    import models.offload

    monkeypatch.setattr(
        models.offload, "to_host", lambda t: (t.detach().reshape(-1).view(torch.uint8).numpy().copy(), t.dtype, t.shape)
    )
    monkeypatch.setattr(
        models.offload,
        "from_host",
        lambda host, device: torch.from_numpy(host[0]).view(host[1]).reshape(host[2]).clone(),
    )


@pytest.mark.parametrize(
    "checkpointing, fp8, offload", [(False, False, False), (True, True, False), (True, False, True), (True, True, True)]
)
def test_estimate_within_15_percent_of_the_measured_cpu_peak(checkpointing, fp8, offload, monkeypatch):
    """A medium Wan (3 blocks of width 128, 768 tokens), LoRA 8, SSPO's forward batch (2 winners + 2 losers): the
    estimate's training rows (weights, adapter, gradients, AdamW, activations, backward) against torch's CPU peak
    over forward + backward + update, plus the weights resident before it. `offload` (model.offload_checkpoints):
    the host copies are kept outside torch's memory (`outside_torch`), as an accelerator's peak does not hold them."""
    from models.offload import CheckpointOffload

    torch.manual_seed(0)
    unet = WanTransformer3DModel(**MEDIUM_WAN).requires_grad_(False)
    add_lora(unet, 8, None, Wan.lora_scope.fget(Wan))
    if checkpointing:
        unet.enable_gradient_checkpointing()
    if fp8:
        enable_fp8_storage(unet)
    latent, text = (16, 3, 32, 32), (64, 256)
    cfg = load_config(
        "configs/tiny_wan_sspo.yaml",
        [
            "--model.gradient_checkpointing",
            str(checkpointing).lower(),
            "--model.lora_rank",
            "8",
            "--model.fp8_base",
            str(fp8).lower(),
            "--model.offload_checkpoints",
            str(offload).lower(),
        ],
    )
    est = estimate(cfg, Denoiser(unet, Wan, latent, text, 0, 0))
    training = [k for k in est.rows if not k.startswith(("  (", "loser", "text", "VAE", "reference"))]
    predicted = sum(est.rows[k] for k in training)
    resident = sum(t.numel() * t.element_size() for t in [*unet.parameters(), *unet.buffers()])
    optimizer = torch.optim.AdamW([p for p in unet.parameters() if p.requires_grad])
    view = object.__new__(Wan)
    view.unet = unet
    x, cond, t = torch.randn(4, *latent, requires_grad=True), torch.randn(4, *text), torch.tensor([500.0, 600, 10, 20])

    if offload:
        outside_torch(monkeypatch)
    hosted = CheckpointOffload(unet) if offload else contextlib.nullcontext

    def step():
        with hosted():
            out = view._denoise(x, t, cond)
        out.square().mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)

    measured = resident + cpu_peak_bytes(step)
    LAST.update(predicted_mb=predicted / 1e6, measured_mb=measured / 1e6, ratio=predicted / measured)
    assert abs(predicted / measured - 1) < 0.15, (predicted, measured, {k: est.rows[k] for k in training})


def test_real_wan_rows_by_hand():
    """Wan 2.1 1.3B (meta device) at 33x480x832: LoRA 32 on q, k, v, out of both attentions and the two FFN layers
    of 30 blocks, r (in + out) each; a checkpointed block keeps its hidden states, 9 x 30 x 52 tokens x 1536 (bf16)."""
    cfg = load_config(
        "configs/wan_sspo.yaml",
        [
            "--model.pretrained",
            "wan2.1-1.3b",
            "--data.frames",
            "33",
            "--data.height",
            "480",
            "--data.width",
            "832",
            "--train.mixed_precision",
            "bf16",
            "--model.lora_rank",
            "32",
        ],
    )
    den = denoiser_for(cfg)
    acts = trace_activations(den, torch.bfloat16)
    est = estimate(cfg, den, acts)
    lora = 30 * 32 * (8 * (1536 + 1536) + 2 * (1536 + 8960))
    assert est.rows["trainable weights (fp32) LoRA"] == 4 * lora and est.rows["AdamW moments (2 x fp32)"] == 8 * lora
    assert acts.inputs[1] == 9 * 30 * 52 * 1536 * 2  # the text, timestep and rotary inputs count at block 0 only
    assert len(acts.blocks) == 30 and acts.total(True) < acts.total(False) / 5


def test_cached_text_and_offloaded_checkpoints_rows():
    """Wan 2.1 1.3B at 33x480x832, SSPO (forward batch 2): cached text takes the UMT5 encoder's 5.68e9 x 2 bytes off the
    device; offloaded checkpoints leave one block's inputs (copied back) and the largest block's recomputation, and
    the rest is printed as CPU memory, not summed; the switch search finds both."""
    args = [
        "--model.pretrained",
        "wan2.1-1.3b",
        "--data.frames",
        "33",
        "--data.height",
        "480",
        "--data.width",
        "832",
        "--train.mixed_precision",
        "bf16",
        "--model.gradient_checkpointing",
        "true",
    ]
    base = load_config("configs/wan_sspo.yaml", args)
    den = denoiser_for(base)
    acts = trace_activations(den, torch.bfloat16)
    plain = estimate(base, den, acts)
    low = estimate(
        load_config(
            "configs/wan_sspo.yaml", [*args, "--data.latent_cache", "c", "--model.offload_checkpoints", "true"]
        ),
        den,
        acts,
    )
    assert plain.rows["text encoder (bf16/fp16)"] == 5.68e9 * 2
    assert low.rows["text encoder (bf16/fp16, on the CPU: cached text)"] == 0
    assert low.rows["activations (checkpointing, offloaded, batch 2)"] == 2 * (
        max(acts.inputs) + max(*acts.blocks, acts.outside)
    )
    assert low.rows["  (checkpoints in CPU memory, pinned)"] == 2 * (acts.outside + sum(acts.inputs))
    saved = (
        plain.rows["activations (checkpointing, batch 2)"] - low.rows["activations (checkpointing, offloaded, batch 2)"]
    )
    assert plain.peak - low.peak == pytest.approx(5.68e9 * 2 + saved)
    budget = plain.peak / 1e9 + OVERHEAD_GB - 5.68e9 * 2 / 1e9 - saved / 2e9
    names, fit = fitting_switches(base, budget, den, acts)
    assert names[0] == "data.latent_cache: <cache folder>" and fit.peak / 1e9 + OVERHEAD_GB <= budget, names


def test_estimate_command_prints_the_parts_and_what_fits(capsys):
    main(
        [
            "estimate",
            "--config",
            "configs/wan_sspo.yaml",
            "--model.pretrained",
            "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
            "--data.frames",
            "33",
            "--data.height",
            "480",
            "--data.width",
            "832",
            "--train.mixed_precision",
            "bf16",
            "--model.gradient_checkpointing",
            "false",
            "--gpu-gb",
            "40",
        ]
    )
    out = capsys.readouterr().out
    for part in (
        "denoiser frozen weights",
        "AdamW moments",
        "activations (no checkpointing",
        "text encoder",
        "VAE",
        "loser sampling",
        "does not fit 40 GB",
        "fits 40 GB with: model.gradient_checkpointing: True",
    ):
        assert part in out, part


def test_gpu_check_runs_tiny_on_cpu_and_records_failures(tmp_path):
    from benchmarks.gpu_check import main as gpu_check

    result = gpu_check(["--tiny", "--out", str(tmp_path)])
    rows = result["cases"]
    assert {r["method"] for r in rows} == {"sft", "dpo", "sspo"} and any(r["fp8"] and r["blocks_to_swap"] for r in rows)
    assert any(r["offload_checkpoints"] and r["fp8"] and r["blocks_to_swap"] for r in rows)
    for r in rows:
        xformers = r["attention"] == "xformers"
        assert r["status"] == "ok" or (xformers and "xformers" in r["status"]), r
        assert r["predicted_gb"] > 0
    saved = json.loads(next(tmp_path.glob("gpu_check_*.json")).read_text())
    assert saved["device"] == "cpu-tiny" and len(saved["cases"]) == len(rows)
    assert "| case" in next(tmp_path.glob("gpu_check_*.md")).read_text()


def test_gpu_check_builds_a_real_architecture_from_its_config(tmp_path, monkeypatch):
    """The real-size path (meta build, random fill, LoRA, fp8, block swap, the estimate) on a narrowed Wan 2.1
    config at a tiny size, so the day a GPU is lent it is not the first run."""
    from benchmarks import gpu_check
    from models.architectures import ARCHITECTURES, WAN_1_3B

    small = {
        **WAN_1_3B,
        "num_layers": 2,
        "num_attention_heads": 2,
        "attention_head_dim": 16,
        "ffn_dim": 64,
        "text_dim": 32,
    }
    monkeypatch.setitem(
        ARCHITECTURES,
        "wan2.1-1.3b",
        {**ARCHITECTURES["wan2.1-1.3b"], "denoiser": small, "text_tokens": 8, "text_dim": 32},
    )
    size = (5, 32, 32)
    monkeypatch.setattr(
        gpu_check,
        "cases",
        lambda tiny: [
            gpu_check.Case("wan2.1-1.3b", size, "sspo", "sdpa", True),
            gpu_check.Case("wan2.1-1.3b", size, "dpo", "sdpa", False),
            gpu_check.Case("wan2.1-1.3b", size, "sspo", "sdpa", True, True, 1),
        ],
    )
    rows = gpu_check.main(["--out", str(tmp_path), "--repeat", "1"])["cases"]
    assert [r["status"] for r in rows] == ["ok"] * 3, rows
    assert all(r["predicted_gb"] > 0 for r in rows)
