"""Every shipped config on tiny random weights saved in the real hub layouts (tests/hub_layouts.py):
it starts, trains, checkpoints and samples; the families' schedules; exports that load in diffusers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ROOT, trained_lora
from diffusers import AnimateDiffPipeline, DDIMScheduler, MotionAdapter, StableDiffusionPipeline, TextToVideoSDPipeline
from peft import PeftModel
from peft.tuners.tuners_utils import BaseTunerLayer

from models import build_model, load_model, save_adapter
from models.lora import add_lora
from videosspo.cli import main
from videosspo.config import ModelConfig, load_config
from videosspo.objectives import get_objective
from videosspo.reference import Policy
from videosspo.sampling import make_scheduler, sample_latents
from videosspo.trainer import Trainer

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")  # the shipped configs train in bf16

# Frames per clip where 2 does not fit: the stacked UNet's channels hold 8; wan(22) takes 4k+1, cogvideox and ltx 8k+1.
CLIP_FRAMES = {"stacked": 8, "wan": 5, "wan22": 5, "cogvideox": 9, "ltx": 9}
# Sampler steps where 1 does not fit: ltx's σ grid is stretched to its shift_terminal, which takes 2.
SAMPLER_STEPS = {"ltx": 2}
SHIPPED = sorted(p for p in (ROOT / "configs").glob("*.yaml") if not p.name.startswith("tiny_"))


def shipped_config(path, hub_layout, synth_data, out, **overrides):
    """The shipped config at `path`, its hub ids pointed at real-layout folders, shrunk to a 1-step run."""
    model = load_config(path).model
    local = {
        key: str(ROOT / value if (ROOT / value).is_dir() else hub_layout(value))  # committed folders (assets/) as is
        for key in ("pretrained", "motion_adapter")
        if (value := getattr(model, key)) is not None
    }
    small = {
        "model": local,
        "data": {
            "path": str(synth_data),
            "frames": CLIP_FRAMES.get(model.family, 2),
            "height": 16,
            "width": 16,
            "num_workers": 0,
            "latent_cache": None,
        },
        "loser": {"steps": SAMPLER_STEPS.get(model.family, 1)},
        "sample": {"steps": SAMPLER_STEPS.get(model.family, 1)},
        "optim": {"batch_size": 1, "grad_accum": 1},
        "train": {
            "output_dir": str(out),
            "max_steps": 1,
            "checkpoint_every": 0,
            "log_every": 1,
            "sample_prompts": ["a red square moving left"],
        },
    }
    for key, value in overrides.items():
        section, name = key.split(".")
        small.setdefault(section, {})[name] = value
    return load_config(path, small)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_config_starts_trains_and_samples(path, hub_layout, synth_data, tmp_path):
    config = shipped_config(path, hub_layout, synth_data, tmp_path / "run")
    summary = Trainer(config).fit()
    assert summary["steps"] == 1 and summary["last_loss"] == summary["last_loss"]  # finite, not NaN
    assert len(summary["samples"]) == 1
    # What the run exported samples from the command line (SD 1.5 as shipped: merged, trained in bf16).
    out = tmp_path / "sample.gif"
    main(
        [
            "sample",
            "--checkpoint",
            summary["checkpoint"],
            "--prompt",
            "a blue circle",
            "--out",
            str(out),
            "--steps",
            str(config.sample.steps),
        ]
    )
    assert out.is_file()


# -- the noise schedule is the family's ------------------------------------------------------------


def alpha_bar(beta_schedule: str, t: int) -> float:
    """ᾱ_t = Π_{s<=t} (1 − β_s); linear: β evenly spaced in [0.00085, 0.012]; scaled_linear: √β evenly spaced."""
    if beta_schedule == "linear":
        betas = torch.linspace(0.00085, 0.012, 1000, dtype=torch.float64)
    else:
        betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return float(torch.cumprod(1 - betas, 0)[t])


def test_each_family_trains_and_samples_on_its_own_schedule(hub_layout):
    sd = str(hub_layout("stable-diffusion-v1-5/stable-diffusion-v1-5"))
    adapter = str(hub_layout("guoyww/animatediff-motion-adapter-v1-5-2"))
    modelscope = str(hub_layout("ali-vilab/text-to-video-ms-1.7b"))
    assert alpha_bar("linear", 500) == pytest.approx(0.1608, abs=1e-4)
    assert alpha_bar("scaled_linear", 500) == pytest.approx(0.2763, abs=1e-4)
    cases = [
        (ModelConfig(family="animatediff", pretrained=sd, motion_adapter=adapter), "linear", [999, 666, 333, 0]),
        (ModelConfig(family="sd", pretrained=sd), "scaled_linear", [751, 501, 251, 1]),  # leading + offset 1
        (ModelConfig(family="modelscope", pretrained=modelscope), "scaled_linear", [751, 501, 251, 1]),
        (
            ModelConfig(
                family="animatediff",
                pretrained=sd,
                motion_adapter=adapter,
                schedule={"beta_schedule": "scaled_linear", "timestep_spacing": "trailing"},
            ),
            "scaled_linear",
            [999, 749, 499, 249],
        ),
    ]
    x0, noise, t = torch.ones(1, 4, 1, 2, 2), torch.zeros(1, 4, 1, 2, 2), torch.tensor([500])
    for cfg, beta_schedule, timesteps in cases:
        model = build_model(cfg)
        want = alpha_bar(beta_schedule, 500)
        # training noise: x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε
        x_t = get_objective(model.objective).noisy(model.scheduler, x0, noise, t)
        torch.testing.assert_close(x_t, torch.full_like(x0, want**0.5), rtol=1e-5, atol=1e-6)
        # the loser / sample sampler: same betas, the family's spacing, the folder's other values
        ddim = make_scheduler(model, "ddim")
        assert float(ddim.alphas_cumprod[500]) == pytest.approx(want, rel=1e-5)
        assert not ddim.config.clip_sample and not ddim.config.set_alpha_to_one
        ddim.set_timesteps(4)
        assert ddim.timesteps.tolist() == timesteps, cfg
    # AnimateDiff's sampler is the one diffusers' AnimateDiff documentation builds
    docs = DDIMScheduler.from_pretrained(
        sd,
        subfolder="scheduler",
        clip_sample=False,
        timestep_spacing="linspace",
        beta_schedule="linear",
        steps_offset=1,
    )
    ours = make_scheduler(build_model(cases[0][0]), "ddim")
    for scheduler in (docs, ours):
        scheduler.set_timesteps(25)
    assert torch.equal(ours.timesteps, docs.timesteps) and torch.equal(ours.alphas_cumprod, docs.alphas_cumprod)


def test_identical_runs_from_a_pretrained_folder_are_bit_identical(hub_layout, synth_data, tmp_path):
    """peft draws lora_A from the global RNG: seeded from train.seed, two runs agree whatever came before."""
    path = ROOT / "configs" / "animatediff_sft.yaml"

    def lora_after_two_steps(seed: int, run: str) -> dict:
        torch.rand(7)  # the global RNG has moved between the runs (other code, another process)
        trainer = Trainer(
            shipped_config(path, hub_layout, synth_data, tmp_path / run, **{"train.seed": seed, "train.max_steps": 2})
        )
        trainer.fit()
        return trainer.policy.snapshot()

    a, b, other = lora_after_two_steps(0, "a"), lora_after_two_steps(0, "b"), lora_after_two_steps(1, "c")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], other[k]) for k in a)


# -- exports load where diffusers users load models --------------------------------------------------

SD15, ADAPTER, MS = (
    "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "guoyww/animatediff-motion-adapter-v1-5-2",
    "ali-vilab/text-to-video-ms-1.7b",
)
PIPELINES = {"animatediff": AnimateDiffPipeline, "modelscope": TextToVideoSDPipeline, "sd": StableDiffusionPipeline}
PROMPT, SEED, STEPS, GUIDANCE = "a red square moving left", 3, 2, 7.5


def trained_lora_model(family: str, hub_layout, rank: int = 4, alpha: float = 8.0):
    """The family's model from its real-layout folders with a LoRA whose B is no longer zero (as after training)."""
    hub = {
        "animatediff": dict(pretrained=hub_layout(SD15), motion_adapter=hub_layout(ADAPTER)),
        "modelscope": dict(pretrained=hub_layout(MS)),
        "sd": dict(pretrained=hub_layout(SD15)),
    }[family]
    cfg = ModelConfig(family=family, lora_rank=rank, lora_alpha=alpha, **{k: str(v) for k, v in hub.items()})
    model = trained_lora(cfg)
    return model, cfg, Policy(model)


def base_pipeline(family: str, hub_layout):
    """The untrained pipeline as users build it from the hub (AnimateDiff: its documented scheduler)."""
    if family == "animatediff":
        pipe = AnimateDiffPipeline.from_pretrained(
            hub_layout(SD15), motion_adapter=MotionAdapter.from_pretrained(hub_layout(ADAPTER))
        )
        pipe.scheduler = DDIMScheduler.from_config(
            pipe.scheduler.config,
            clip_sample=False,
            beta_schedule="linear",
            timestep_spacing="linspace",
            steps_offset=1,
        )
        return pipe
    return PIPELINES[family].from_pretrained(hub_layout(MS if family == "modelscope" else SD15))


def pipeline_latents(pipe, family: str) -> torch.Tensor:
    """The pipeline's own generation, stopped at the latents `b c f h w`."""
    video = {} if family == "sd" else {"num_frames": 2}
    out = pipe(
        PROMPT,
        height=16,
        width=16,
        num_inference_steps=STEPS,
        guidance_scale=GUIDANCE,
        output_type="latent",
        generator=torch.Generator().manual_seed(SEED),
        **video,
    )
    return out.images.unsqueeze(2) if family == "sd" else out.frames


def our_latents(model, family: str) -> torch.Tensor:
    return sample_latents(
        model,
        [PROMPT],
        frames=1 if family == "sd" else 2,
        height=16,
        width=16,
        seeds=[SEED],
        steps=STEPS,
        guidance=GUIDANCE,
        scheduler="ddim",
    )


@pytest.mark.parametrize("family", list(PIPELINES))
def test_merged_export_is_a_pipeline_folder_that_generates(family, hub_layout, tmp_path):
    model, cfg, policy = trained_lora_model(family, hub_layout)
    model.to(dtype=torch.bfloat16)  # the frozen parts as a bf16 run holds them
    merged = policy.merged_unet()
    model.save_pretrained(tmp_path / "model", unet=merged)
    pipe = PIPELINES[family].from_pretrained(tmp_path / "model")  # what users do, nothing else
    assert pipe.text_encoder.dtype == pipe.vae.dtype == torch.float32 == pipe.unet.dtype
    assert type(pipe.scheduler).__name__ == ("PNDMScheduler" if family == "sd" else "DDIMScheduler")
    assert pipe.scheduler.config.beta_schedule == ("linear" if family == "animatediff" else "scaled_linear")
    frames = pipe(
        PROMPT,
        height=16,
        width=16,
        num_inference_steps=STEPS,
        output_type="np",
        **({} if family == "sd" else {"num_frames": 2}),
    )
    pixels = frames.images if family == "sd" else frames.frames
    assert pixels.shape[-3:] == (16, 16, 3) and np.isfinite(pixels).all()
    # The pipeline's sampler (DDIM for comparison) gives exactly the project's own samples of the export.
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    ours = load_model(tmp_path / "model")
    torch.testing.assert_close(pipeline_latents(pipe, family), our_latents(ours, family), rtol=1e-4, atol=1e-5)
    if family == "animatediff":  # the trained motion modules alone plug into an SD 1.5 base
        adapter = MotionAdapter.from_pretrained(tmp_path / "model" / "motion_adapter")
        on_base = AnimateDiffPipeline.from_pretrained(hub_layout(SD15), motion_adapter=adapter).unet.state_dict()
        motion = {k: v for k, v in merged.state_dict().items() if "motion_modules" in k}
        assert motion and all(torch.equal(on_base[k], v) for k, v in motion.items())


@pytest.mark.parametrize("family", list(PIPELINES))
def test_adapter_export_loads_with_the_family_lora_loader(family, hub_layout, tmp_path):
    model, cfg, policy = trained_lora_model(family, hub_layout)
    save_adapter(tmp_path / "model", policy.snapshot(), cfg)
    pipe = base_pipeline(family, hub_layout)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    base = pipeline_latents(pipe, family)
    if family == "modelscope":  # diffusers has no LoRA loader for UNet3DConditionModel: peft's (docs/lora-formats.md)
        pipe.unet = PeftModel.from_pretrained(pipe.unet, tmp_path / "model").merge_and_unload()
    else:
        pipe.load_lora_weights(tmp_path / "model")
    adapted = pipeline_latents(pipe, family)
    assert (adapted - base).abs().max() > 1e-3  # the LoRA is applied ...
    ours = our_latents(load_model(tmp_path / "model"), family)
    torch.testing.assert_close(adapted, ours, rtol=1e-4, atol=1e-5)  # ... exactly as the project applies it
    if family == "animatediff":  # the motion LoRA alone: only motion-module layers, on the plain base
        pipe = base_pipeline(family, hub_layout)
        pipe.load_lora_weights(tmp_path / "model" / "motion_lora")
        lora_layers = [n for n, m in pipe.unet.named_modules() if isinstance(m, BaseTunerLayer)]
        assert lora_layers and all("motion_modules" in n for n in lora_layers)


# -- merged exports keep the frozen parts exactly as the hub ships them ---------------------------------------

WAN21, WAN22, COGVIDEOX, LTX = (
    "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
    "Wan-AI/Wan2.2-T2V-A14B-Diffusers",
    "THUDM/CogVideoX-2b",
    "Lightricks/LTX-Video",
)
HUB_MODELS = {
    "sd": dict(pretrained=SD15),
    "animatediff": dict(pretrained=SD15, motion_adapter=ADAPTER),
    "modelscope": dict(pretrained=MS),
    "wan": dict(pretrained=WAN21),
    "wan22": dict(pretrained=WAN22),
    "cogvideox": dict(pretrained=COGVIDEOX),
    "ltx": dict(pretrained=LTX),
}


def hub_model(family: str, hub_layout):
    return build_model(ModelConfig(family=family, **{k: str(hub_layout(v)) for k, v in HUB_MODELS[family].items()}))


def stored_tensors(folder) -> dict[str, torch.Tensor]:
    """Every tensor of a component folder's safetensors files (all shards), as stored: name -> tensor."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    assert files, f"no weights in {folder}"
    return {k: v for f in files for k, v in load_file(str(f)).items()}


def assert_bit_equal(ours: dict, source: dict, where: str) -> None:
    assert ours.keys() == source.keys(), where
    for key, value in source.items():
        assert ours[key].dtype == value.dtype and torch.equal(ours[key].view(torch.uint8), value.view(torch.uint8)), (
            f"{where}: {key} ({ours[key].dtype}) differs from what was loaded ({value.dtype})"
        )


@pytest.mark.parametrize("family", list(HUB_MODELS))
def test_merged_export_holds_the_frozen_parts_bit_equal_to_the_source(family, hub_layout, tmp_path):
    """A bf16 run rounds the VAE and text encoder it holds; the export must not: every tensor of its vae/ and
    text_encoder/ (LTX's latent statistics, the T5's bf16 shards, CogVideoX's fp16 VAE) is the source's, bytes and
    dtype. The training copy stays as training had it."""
    model = hub_model(family, hub_layout)
    source = hub_layout(HUB_MODELS[family]["pretrained"])
    model.to(dtype=torch.bfloat16)  # the frozen parts as mixed_precision bf16 holds them
    held = {name: {k: v.clone() for k, v in part.state_dict().items()} for name, part in model._frozen().items()}
    loaded = type(model.vae).from_pretrained(source / "vae").state_dict()  # as diffusers loads it: fp32
    assert any(
        not torch.equal(held["vae"][k].float(), v) for k, v in loaded.items()
    )  # rounded: a cast back would differ
    model.save_pretrained(tmp_path / "model")
    for part in ("vae", "text_encoder"):
        assert_bit_equal(stored_tensors(tmp_path / "model" / part), stored_tensors(source / part), f"{family} {part}")
    for name, part in model._frozen().items():
        assert all(torch.equal(part.state_dict()[k], v) for k, v in held[name].items()), name


@pytest.mark.parametrize("family", ["animatediff", "wan", "ltx"])
def test_merged_export_of_a_tiny_model_holds_its_frozen_parts_as_built(family, tmp_path):
    """Without a source folder (tiny models) the export writes the frozen parts as they were before the bf16 cast."""
    model = build_model(ModelConfig(family=family))
    built = {name: {k: v.clone() for k, v in part.state_dict().items()} for name, part in model._frozen().items()}
    model.to(dtype=torch.bfloat16)
    model.save_pretrained(tmp_path / "model")
    for name, state in built.items():
        saved = stored_tensors(tmp_path / "model" / name)
        assert_bit_equal(
            {k: saved[k] for k in state if k in saved}, {k: v for k, v in state.items() if k in saved}, name
        )
        assert len(saved) >= 0.9 * len(state)  # tied / non-persistent entries aside, everything was written
    assert all(p.dtype == torch.bfloat16 for part in model._frozen().values() for p in part.parameters())


# -- the documented load lines on folders as the hub ships them (docs/families.md) ----------------------------

DIT_PIPELINES = {
    "cogvideox": ("CogVideoXPipeline", COGVIDEOX),
    "ltx": ("LTXPipeline", LTX),
    "wan": ("WanPipeline", WAN21),
}


@pytest.mark.parametrize("family", list(DIT_PIPELINES))
def test_documented_load_lines_generate_from_hub_shaped_folders(family, hub_layout, tmp_path):
    """docs/families.md: `XPipeline.from_pretrained(path, dtype=torch.bfloat16)`, on the base as the hub ships it
    (T5 / UMT5 in bf16, the transformer loading in fp32) with our LoRA file, and on a merged export. Without a dtype
    CogVideoXPipeline and LTXPipeline cannot run such a folder (they do not cast the bf16 prompt embeddings to the fp32
    transformer; WanPipeline does), which is why the documented line carries one."""
    import diffusers

    pipeline_class, hub_id = getattr(diffusers, DIT_PIPELINES[family][0]), DIT_PIPELINES[family][1]
    model = hub_model(family, hub_layout)
    model.unet.requires_grad_(False)
    add_lora(model.unet, 4, 8.0, model.lora_scope)
    gen = torch.Generator().manual_seed(0)
    for name, p in model.unet.named_parameters():
        if "lora_B" in name:
            p.data = torch.randn(p.shape, generator=gen) * 0.2
    policy = Policy(model)
    model.save_pretrained(tmp_path / "merged", unet=policy.merged_unet())
    save_adapter(
        tmp_path / "adapter",
        policy.snapshot(),
        ModelConfig(family=family, pretrained=str(hub_layout(hub_id)), lora_rank=4, lora_alpha=8.0),
    )
    frames = 9 if family != "wan" else 5

    def generate(pipe) -> torch.Tensor:
        return pipe(
            PROMPT,
            height=32,
            width=32,
            num_frames=frames,
            num_inference_steps=2,
            max_sequence_length=16,
            output_type="latent",
            generator=torch.Generator().manual_seed(SEED),
        ).frames.float()

    for dtype in (torch.bfloat16, torch.float32):  # the documented line; fp32, where merged == base + LoRA exactly
        base = pipeline_class.from_pretrained(hub_layout(hub_id), dtype=dtype)
        plain = generate(base)
        base.load_lora_weights(tmp_path / "adapter")
        adapted = generate(base)
        merged = generate(pipeline_class.from_pretrained(tmp_path / "merged", dtype=dtype))
        assert torch.isfinite(adapted).all() and (adapted - plain).abs().max() > 0.1  # the LoRA is applied
        tolerance = 0.1 if dtype == torch.bfloat16 else 1e-4
        torch.testing.assert_close(merged, adapted, rtol=tolerance, atol=tolerance)
    if family != "wan":
        with pytest.raises(RuntimeError, match="dtype"):
            generate(pipeline_class.from_pretrained(tmp_path / "merged"))


def test_the_source_of_a_hub_id_is_its_snapshot_in_the_cache(tmp_path, monkeypatch):
    """`model.pretrained` as a hub id: the frozen parts are copied from the cached snapshot from_pretrained read."""
    import huggingface_hub

    from models.loading import source_folder

    snapshot = tmp_path / "models--org--name" / "snapshots" / ("a" * 40)
    (snapshot / "vae").mkdir(parents=True)
    (tmp_path / "models--org--name" / "refs").mkdir()
    (tmp_path / "models--org--name" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert source_folder("org/name") == snapshot
    assert source_folder("org/other") is None and source_folder(str(snapshot)) == snapshot
