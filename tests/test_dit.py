"""DiT families (Wan, LTX-Video: flow matching; CogVideoX: v-prediction): the flow objective by hand,
the losses on velocity errors, temporal-VAE latent frames, agreement with diffusers' `WanPipeline` /
`CogVideoXPipeline` / `LTXPipeline` (prompts, latents, sampling, LoRA files), gradient checkpointing,
and training: SSPO steps, resume, the real hub layout."""

from __future__ import annotations

import copy
import json
import math
import operator

import diffusers
import pytest
import torch
from diffusers import (
    AutoencoderKLLTXVideo,
    CogVideoXDDIMScheduler,
    CogVideoXDPMScheduler,
    CogVideoXPipeline,
    CogVideoXTransformer3DModel,
    FlowMatchEulerDiscreteScheduler,
    LTXPipeline,
    UniPCMultistepScheduler,
    WanPipeline,
)
from einops import rearrange
from test_trainer import assert_two_processes_equal_one, straight_and_resumed, unet_state

from models import build_model, load_checked_config, load_model
from videosspo import rng
from videosspo.config import ConfigError, ModelConfig
from videosspo.latents import cache_latents
from videosspo.losses import LOSSES, per_sample_error
from videosspo.objectives import OBJECTIVES
from videosspo.sampling import make_scheduler, per_sample_noise, sample_latents
from videosspo.trainer import Trainer

PROMPTS = ["a red square moving left", "a blue circle moving up"]
WAN = {
    "model.family": "wan",
    "data.frames": 5,
    "data.height": 32,
    "data.width": 32,
    "loser.scheduler": "euler",
    "sample.scheduler": "unipc",
    "model.lora_rank": 4,
    "train.export": "adapter",
}
COGVIDEOX = {
    **WAN,
    "model.family": "cogvideox",
    "data.frames": 9,
    "loser.scheduler": "ddim",
    "sample.scheduler": "ddim",
}
LTX = {**WAN, "model.family": "ltx", "data.frames": 9, "loser.scheduler": "euler", "sample.scheduler": "euler"}
TRAIN = {"wan": WAN, "cogvideox": COGVIDEOX, "ltx": LTX}
_CACHE: dict = {}


def tiny(family: str):
    if family not in _CACHE:
        _CACHE[family] = build_model(ModelConfig(family=family))
    return _CACHE[family]


def wan():
    return tiny("wan")


def pipeline(model):
    """The family's diffusers pipeline over the very same modules, with the sampler its exports ship (Wan: UniPC
    on flow σ; Wan 2.2 A14B: both experts and the boundary)."""
    return getattr(diffusers, model.pipeline)(
        tokenizer=model.tokenizer,
        text_encoder=model.text_encoder,
        vae=model.vae,
        **model.pipeline_components(model.unet),
        scheduler=model.inference_scheduler_of(),
    )


# -- the flow-matching objective -------------------------------------------------------------------


def test_flow_noising_and_target_by_hand():
    sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
    x0, noise = torch.randn(2, 4, 3, 2, 2), torch.randn(2, 4, 3, 2, 2)
    t = torch.tensor([250.0, 900.0])
    for name in ("flow", "flow_shifted", "flow_logit_normal"):
        obj = OBJECTIVES[name]
        torch.testing.assert_close(obj.noisy(sched, x0, noise, t)[0], 0.75 * x0[0] + 0.25 * noise[0])
        torch.testing.assert_close(obj.noisy(sched, x0, noise, t)[1], 0.1 * x0[1] + 0.9 * noise[1])
        torch.testing.assert_close(obj.target(sched, x0, noise, t), noise - x0)


def test_flow_noising_matches_the_euler_sampler():
    """x_t at the sampler's own σ grid is what `FlowMatchEulerDiscreteScheduler.scale_noise` gives."""
    sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
    sched.set_timesteps(10)
    x0, noise = torch.randn(1, 4, 2, 2, 2), torch.randn(1, 4, 2, 2, 2)
    t = sched.timesteps[3:4]
    torch.testing.assert_close(OBJECTIVES["flow_shifted"].noisy(sched, x0, noise, t), sched.scale_noise(x0, t, noise))


def test_flow_timestep_densities_by_hand():
    sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
    positions = list(range(512))
    u = OBJECTIVES["flow"].timesteps(sched, 0, 7, positions) / 1000  # uniform: σ = u
    assert u.dtype == torch.float32 and 0 <= float(u.min()) and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.05
    shifted = OBJECTIVES["flow_shifted"].timesteps(sched, 0, 7, positions) / 1000
    torch.testing.assert_close(shifted, 3 * u / (1 + 2 * u))
    logit_normal = OBJECTIVES["flow_logit_normal"].timesteps(sched, 0, 7, positions) / 1000
    normal = torch.distributions.Normal(0.0, 1.0)
    torch.testing.assert_close(logit_normal, torch.sigmoid(normal.icdf(u)), atol=1e-5, rtol=1e-5)
    # per sample: position 5 draws the same whatever its batch
    assert torch.equal(OBJECTIVES["flow"].timesteps(sched, 0, 7, [5]), u[5:6] * 1000)


def test_dpo_and_sspo_on_velocity_errors_follow_the_same_formulas():
    sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
    obj = OBJECTIVES["flow_shifted"]
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 4, 3, 2, 2, generator=gen)
    noise = torch.randn(4, 4, 3, 2, 2, generator=gen)
    t = obj.timesteps(sched, 0, 0, [0, 1, 2, 3])
    target = obj.target(sched, x0, noise, t)
    preds = [target + 0.3 * torch.randn(target.shape, generator=gen) for _ in range(4)]
    e_w, e_l, ref_w, ref_l = (per_sample_error(p, target) for p in preds)
    by_hand = [((target - p) ** 2).mean(dim=(1, 2, 3, 4)) for p in preds]
    torch.testing.assert_close(e_w, by_hand[0])
    beta = 500.0
    dpo = -torch.nn.functional.logsigmoid(-beta / 2 * ((e_w - ref_w) - (e_l - ref_l)))
    got, _ = LOSSES["dpo"](e_w, e_l, ref_w, ref_l, beta=beta, ssr_mode="sft")
    torch.testing.assert_close(got, dpo)
    got, stats = LOSSES["sspo"](e_w, e_l, ref_w, ref_l, beta=beta, ssr_mode="sft")
    torch.testing.assert_close(got, torch.where(ref_w < e_w, e_w, dpo))
    assert float(stats["sspo/switch_frac"]) == float((ref_w < e_w).float().mean())


# -- the Wan family against WanPipeline --------------------------------------------------------------


@pytest.mark.parametrize(
    "family, frames, latent_frames",
    [
        ("wan", 1, 1),
        ("wan", 5, 2),
        ("wan", 9, 3),
        ("cogvideox", 1, 1),
        ("cogvideox", 9, 3),
        ("ltx", 1, 1),
        ("ltx", 9, 2),
        ("ltx", 17, 3),
    ],
)
def test_temporal_vae_latent_frames(family, frames, latent_frames):
    model = tiny(family)
    assert model.latent_shape(frames, 32, 32) == (4, latent_frames, 4, 4)
    pixels = torch.rand(1, 3, frames, 32, 32) * 2 - 1
    latents = model.encode_video(pixels)
    assert latents.shape == (1, 4, latent_frames, 4, 4)
    assert model.decode(latents).shape == pixels.shape


def test_invalid_frame_count_and_size_are_clear_errors():
    model = wan()
    with pytest.raises(ValueError, match=r"data\.frames=8 is invalid for model\.family=wan.*4k\+1 \(e\.g\. 5, 17"):
        model.latent_shape(8, 32, 32)
    with pytest.raises(ValueError, match=r"24x32 must be multiples of 16"):
        model.latent_shape(9, 24, 32)
    with pytest.raises(ValueError, match=r"data\.frames=5 is invalid for model\.family=cogvideox.*8k\+1 \(e\.g\. 9"):
        tiny("cogvideox").latent_shape(5, 32, 32)  # its VAE decodes 2 latent frames to 8, not 5
    with pytest.raises(ConfigError, match=r"model\.vae='none'.*'auto' for model\.family=wan"):
        load_checked_config(overrides=["--model.family=wan", "--model.vae=none"])


def test_cogvideox_prompts_latents_and_sampler_follow_its_pipeline():
    model = tiny("cogvideox")
    pipe = pipeline(model)
    torch.testing.assert_close(
        model.encode_prompt(PROMPTS), pipe._get_t5_prompt_embeds(PROMPTS, max_sequence_length=16)
    )
    latents = torch.randn(1, *model.latent_shape(9, 32, 32))
    sf = model.vae.config.scaling_factor
    torch.testing.assert_close(model.decode(latents), model.vae.decode(latents / sf).sample.clamp(-1, 1))
    # CogVideoX-5b's rotary position embeddings: our call equals the pipeline's (CFG 6, DDIM) for the same seed:
    # the pipeline draws its noise frames first (b f c h w), and so does ours (`noise_layout`)
    for view in (model, rotary_cogvideox()):
        ours = sample_latents(
            view, PROMPTS[:1], frames=9, height=32, width=32, seeds=[3], steps=3, guidance=6.0, scheduler="ddim"
        )
        theirs = pipeline(view)(
            PROMPTS[0],
            negative_prompt="",
            height=32,
            width=32,
            num_frames=9,
            num_inference_steps=3,
            guidance_scale=6.0,
            generator=torch.Generator().manual_seed(3),
            max_sequence_length=16,
            output_type="latent",
        ).frames
        torch.testing.assert_close(ours, rearrange(theirs, "b f c h w -> b c f h w"))


def rotary_cogvideox():
    """The tiny CogVideoX with a 5b-like transformer (rotary position embeddings)."""
    view = copy.copy(tiny("cogvideox"))
    torch.manual_seed(0)
    view.unet = CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=4,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=32,
        num_layers=1,
        sample_width=4,
        sample_height=4,
        sample_frames=9,
        patch_size=2,
        max_text_seq_length=16,
        use_rotary_positional_embeddings=True,
    )
    return view


def test_cogvideox_dpm_sampler_equals_the_pipeline_with_it():
    """CogVideoX-5b samples with CogVideoXDPMScheduler (2nd order: it steps with the previous x0 estimate and
    timestep; stochastic): `scheduler="dpm"` in the one loop == `CogVideoXPipeline` with that scheduler, from the
    same x_T and the same step-noise stream (CFG 6)."""
    view = rotary_cogvideox()
    shape = view.latent_shape(9, 32, 32)
    pipe = CogVideoXPipeline(
        tokenizer=view.tokenizer,
        text_encoder=view.text_encoder,
        vae=view.vae,
        transformer=view.unet,
        scheduler=CogVideoXDPMScheduler.from_config(view.scheduler.config),
    )

    def theirs(stream_seed):
        return pipe(
            PROMPTS[0],
            negative_prompt="",
            height=32,
            width=32,
            num_frames=9,
            num_inference_steps=4,
            guidance_scale=6.0,
            latents=per_sample_noise(shape, [3], layout="f c h w").transpose(1, 2),
            generator=rng.generator(stream_seed, 0, 0, "sampler"),
            max_sequence_length=16,
            output_type="latent",
        ).frames

    ours = sample_latents(
        view, PROMPTS[:1], frames=9, height=32, width=32, seeds=[3], steps=4, guidance=6.0, scheduler="dpm"
    )
    torch.testing.assert_close(ours, rearrange(theirs(3), "b f c h w -> b c f h w"))
    assert (theirs(4) - theirs(3)).abs().max() > 1e-3  # the step noise matters: the streams are what agree
    ddim = sample_latents(
        view, PROMPTS[:1], frames=9, height=32, width=32, seeds=[3], steps=4, guidance=6.0, scheduler="ddim"
    )
    assert (ddim - ours).abs().max() > 1e-3


def test_prompts_and_latents_follow_wan_pipeline():
    model = wan()
    pipe = pipeline(model)
    cond = model.encode_prompt(PROMPTS)
    want = pipe._get_t5_prompt_embeds(PROMPTS, max_sequence_length=16)
    torch.testing.assert_close(cond, want)
    assert cond[1, -1].abs().sum() == 0  # padding positions are zero, as the pipeline pads
    # decode = the pipeline's de-normalisation z * std + mean, then the VAE
    latents = torch.randn(1, *model.latent_shape(5, 32, 32))
    std = torch.tensor(model.vae.config.latents_std).view(1, -1, 1, 1, 1)
    mean = torch.tensor(model.vae.config.latents_mean).view(1, -1, 1, 1, 1)
    torch.testing.assert_close(model.decode(latents), model.vae.decode(latents * std + mean).sample.clamp(-1, 1))


def test_sampler_equals_wan_pipeline_with_cfg():
    """Our one sampling loop (UniPC on flow σ, CFG 5) reproduces `WanPipeline(...)` from the same x_1."""
    model = wan()
    shape = model.latent_shape(5, 32, 32)
    ours = sample_latents(
        model,
        PROMPTS[:1],
        frames=5,
        height=32,
        width=32,
        seeds=[3],
        steps=4,
        guidance=5.0,
        negative_prompt="",
        scheduler="unipc",
    )
    theirs = pipeline(model)(
        PROMPTS[0],
        negative_prompt="",
        height=32,
        width=32,
        num_frames=5,
        num_inference_steps=4,
        guidance_scale=5.0,
        latents=per_sample_noise(shape, [3]),
        max_sequence_length=16,
        output_type="latent",
    ).frames
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("source", ["wan", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "cogvideox"])
def test_merged_export_ships_the_pipeline_sampler(tmp_path, hub_layout, source):
    """A merged export's `scheduler/` is what the family's pipeline samples with, not a DDIM (tiny models declared
    none) nor a UniPC on a DDPM schedule (UniPC built from the flow Euler config): Wan's is UniPC on flow σ with the
    training shift, and `WanPipeline.from_pretrained` then samples our latents; CogVideoX's is its own DDIM."""
    model = (
        tiny(source)
        if "/" not in source
        else build_model(ModelConfig(family="wan", pretrained=str(hub_layout(source))))
    )
    model.save_pretrained(tmp_path / "model")
    if model.family == "cogvideox":
        pipe = CogVideoXPipeline.from_pretrained(tmp_path / "model")
        assert type(pipe.scheduler) is CogVideoXDDIMScheduler
        assert pipe.scheduler.config.snr_shift_scale == 3.0 and pipe.scheduler.config.prediction_type == "v_prediction"
        return
    pipe = WanPipeline.from_pretrained(tmp_path / "model")
    config = pipe.scheduler.config
    assert type(pipe.scheduler) is UniPCMultistepScheduler
    assert (config.use_flow_sigmas, config.prediction_type, config.flow_shift) == (True, "flow_prediction", 3.0)
    shape = model.latent_shape(5, 32, 32)
    ours = sample_latents(
        load_model(tmp_path / "model"),
        PROMPTS[:1],
        frames=5,
        height=32,
        width=32,
        seeds=[2],
        steps=3,
        guidance=4.0,
        scheduler="unipc",
    )
    theirs = pipe(
        PROMPTS[0],
        negative_prompt="",
        height=32,
        width=32,
        num_frames=5,
        num_inference_steps=3,
        guidance_scale=4.0,
        latents=per_sample_noise(shape, [2]),
        max_sequence_length=16,
        output_type="latent",
    ).frames
    torch.testing.assert_close(ours, theirs)


# -- the LTX-Video family against LTXPipeline ---------------------------------------------------------


def test_ltx_frames_and_sizes_follow_its_vae():
    """8x time and, with LTX-Video's 4x4 VAE patching, 32x space: clear errors otherwise."""
    model = copy.copy(tiny("ltx"))
    with pytest.raises(ValueError, match=r"data\.frames=5 is invalid for model\.family=ltx.*8k\+1 \(e\.g\. 9, 33, 65"):
        model.latent_shape(5, 32, 32)
    model.vae = AutoencoderKLLTXVideo(
        latent_channels=4,
        block_out_channels=(8,) * 4,
        decoder_block_out_channels=(8,) * 4,
        layers_per_block=(1,) * 5,
        decoder_layers_per_block=(1,) * 5,
        patch_size=4,
    )
    assert model.latent_shape(65, 480, 704) == (4, 9, 15, 22)  # configs/ltx_*.yaml
    with pytest.raises(ValueError, match=r"480x720 must be multiples of 32 for model\.family=ltx"):
        model.latent_shape(65, 480, 720)


def test_ltx_timestep_density_is_the_shifted_logit_normal():
    """σ = sigmoid(n + μ), μ linear in f·h·w: 0.95 at 1024 latent tokens, 2.05 at 4096 (LTX-Video's trainer)."""
    sched = tiny("ltx").scheduler
    positions = list(range(256))
    u = OBJECTIVES["flow"].timesteps(sched, 0, 7, positions) / 1000
    n = torch.distributions.Normal(0.0, 1.0).icdf(u)
    for seq_len, mu in ((1024, 0.95), (4096, 2.05), (2560, 1.5)):
        sigma = OBJECTIVES["flow_shifted_logit_normal"].timesteps(sched, 0, 7, positions, seq_len=seq_len) / 1000
        torch.testing.assert_close(sigma, torch.sigmoid(n + mu), atol=1e-5, rtol=1e-5)


def test_ltx_prompts_latents_and_sampler_follow_ltx_pipeline():
    model = tiny("ltx")
    pipe = pipeline(model)
    cond = model.encode_prompt(PROMPTS + ["a red"])
    embeds, mask = pipe._get_t5_prompt_embeds(PROMPTS + ["a red"], max_sequence_length=16)
    assert mask.sum(dim=1).tolist() == [6, 6, 3]  # 5 words + </s>; "a red" + </s>
    torch.testing.assert_close(cond, embeds * mask[..., None])  # the pipeline's embeddings where its mask is on
    # latents = (z − mean) / std with the VAE's per-channel statistics, and back (scaling factor 1)
    pixels = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    mean, std = (
        torch.tensor([0.1, -0.2, 0.3, 0.0]).view(1, -1, 1, 1, 1),
        torch.tensor([1.5, 2.0, 0.5, 1.0]).view(1, -1, 1, 1, 1),
    )
    z = model.vae.encode(pixels).latent_dist.mode()
    torch.testing.assert_close(model.encode_video(pixels), (z - mean) / std)
    latents = torch.randn(1, *model.latent_shape(9, 32, 32))
    torch.testing.assert_close(model.decode(latents), model.vae.decode(latents * std + mean).sample.clamp(-1, 1))
    # our one loop (Euler on the σ grid shifted by f·h·w, CFG 3) reproduces LTXPipeline from the same x_1
    shape = model.latent_shape(9, 32, 32)
    ours = sample_latents(
        model, PROMPTS[:1], frames=9, height=32, width=32, seeds=[3], steps=4, guidance=3.0, scheduler="euler"
    )
    packed = LTXPipeline._pack_latents(per_sample_noise(shape, [3]))
    theirs = pipe(
        PROMPTS[0],
        negative_prompt="",
        height=32,
        width=32,
        num_frames=9,
        num_inference_steps=4,
        guidance_scale=3.0,
        latents=packed,
        max_sequence_length=16,
        output_type="latent",
    ).frames
    torch.testing.assert_close(ours, LTXPipeline._unpack_latents(theirs, *shape[1:]))
    with pytest.raises(ValueError, match=r"sampler 'unipc' does not apply to model\.family=ltx.*one of euler"):
        make_scheduler(model, "unipc")
    with pytest.raises(ValueError, match=r"1 sampling step is too few for model\.family=ltx.*shift_terminal=0\.1"):
        make_scheduler(model, "euler", steps=1)  # LTXPipeline's 1-step grid σ = [1] stretches to NaN


def test_ltx_merged_export_is_a_pipeline_folder_that_samples_as_we_do(tmp_path):
    """`LTXPipeline.from_pretrained(model/)`: its scheduler keeps the shifted σ schedule, and generates our latents."""
    tiny("ltx").save_pretrained(tmp_path / "model")
    pipe = LTXPipeline.from_pretrained(tmp_path / "model")
    assert type(pipe.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
    assert pipe.scheduler.config.use_dynamic_shifting and pipe.scheduler.config.base_shift == 0.95
    model = load_model(tmp_path / "model")
    shape = model.latent_shape(9, 32, 32)
    ours = sample_latents(
        model, PROMPTS[1:], frames=9, height=32, width=32, seeds=[5], steps=3, guidance=3.0, scheduler="euler"
    )
    theirs = pipe(
        PROMPTS[1],
        negative_prompt="",
        height=32,
        width=32,
        num_frames=9,
        num_inference_steps=3,
        guidance_scale=3.0,
        latents=LTXPipeline._pack_latents(per_sample_noise(shape, [5])),
        max_sequence_length=16,
        output_type="latent",
    ).frames
    torch.testing.assert_close(ours, LTXPipeline._unpack_latents(theirs, *shape[1:]))


def test_ltx_trains_from_the_real_hub_layout(tiny_config, hub_layout):
    """The folder `LTXPipeline.save_pretrained` writes, as Lightricks/LTX-Video holds it (σ shifted by sequence length)."""
    folder = hub_layout("Lightricks/LTX-Video")
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "LTXPipeline" and index["vae"] == ["diffusers", "AutoencoderKLLTXVideo"]
    trainer = Trainer(tiny_config(**LTX, **{"model.pretrained": str(folder), "train.max_steps": 1}))
    assert trainer.model.scheduler.config.use_dynamic_shifting and trainer.model.scheduler.config.shift_terminal == 0.1
    model = tiny("ltx")
    x, t, cond = torch.randn(1, 4, 2, 4, 4), torch.tensor([700.0]), model.encode_prompt(PROMPTS[:1])
    with torch.no_grad():  # the VAE's statistics and the weights come back from the folder
        torch.testing.assert_close(trainer.model.predict(x, t, cond), model.predict(x, t, cond))
        torch.testing.assert_close(trainer.model.vae.latents_std, model.vae.latents_std)
    assert trainer.fit()["steps"] == 1


@pytest.mark.parametrize(
    "family, blocks", [("wan", "blocks"), ("ltx", "transformer_blocks"), ("wan22", "transformer_2.blocks")]
)  # t = 500: the low-noise expert's
def test_gradient_checkpointing_recomputes_each_block(family, blocks):
    model = build_model(ModelConfig(family=family))
    calls = []
    operator.attrgetter(blocks)(model.unet)[0].register_forward_pre_hook(
        lambda *args: calls.append(1)
    )  # recomputation stops early: pre-hook
    x, t, cond = torch.randn(1, 4, 2, 4, 4), torch.tensor([500.0]), model.encode_prompt(PROMPTS[:1])
    for enabled in (False, True):
        if enabled:
            model.unet.enable_gradient_checkpointing()
        calls.clear()
        model.unet.train()
        model.predict(x, t, cond).square().mean().backward()
        assert len(calls) == (2 if enabled else 1)  # checkpointed: forward again inside backward


# -- training -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["wan", "cogvideox", "ltx"])
def test_sspo_steps_lora_export_and_pipeline_load(tiny_config, family):
    cfg = tiny_config(**TRAIN[family])
    trainer = Trainer(cfg)
    before = unet_state(trainer)
    summary = trainer.fit()
    after = unet_state(trainer)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all("lora" in k for k in changed)
    assert any(".ff" in k for k in changed) and any(".attn" in k for k in changed)  # FFN + attention
    metrics = [json.loads(line) for line in open(cfg.train.output_dir + "/metrics.jsonl")]
    assert all(math.isfinite(m["loss"]) and "sspo/switch_frac" in m for m in metrics)
    # The exported adapter: our loader and the pipeline's load_lora_weights give the trained policy.
    exported = f"{summary['checkpoint']}/model"
    ours = load_model(exported)
    pipe = pipeline(build_model(ModelConfig(family=family)))
    x, t, cond = torch.randn(1, 4, 2, 4, 4), torch.tensor([700]), ours.encode_prompt(PROMPTS[:1])
    with torch.no_grad():
        base = copy.copy(ours)
        base.unet = pipe.transformer  # the pipeline's transformer, called through the family's protocol
        before = base.predict(x, t, cond)
        pipe.load_lora_weights(exported)
        loaded = base.predict(x, t, cond)
        trained = trainer.model.predict(x, t, cond)
        torch.testing.assert_close(ours.predict(x, t, cond), trained, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loaded, trained, atol=1e-5, rtol=1e-5)
    assert (loaded - before).abs().max() > 1e-4


@pytest.mark.parametrize("family", ["wan", "cogvideox"])
def test_resume_equals_uninterrupted(tiny_config, tmp_path, family):
    """Stopped at step 2 and resumed == 3 steps straight, bit for bit (LoRA, losers, replay pool, optimizer)."""
    straight, resumed = straight_and_resumed(tiny_config, tmp_path, 3, **TRAIN[family], **{"train.checkpoint_every": 2})
    a, b = unet_state(straight), unet_state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    m_a, m_b = ([json.loads(line) for line in open(t.out / "metrics.jsonl")] for t in (straight, resumed))
    assert [m["loss"] for m in m_a] == [m["loss"] for m in m_b]


def test_two_processes_equal_one(synth_data, tmp_path):
    """The tiny Wan (LoRA) under torchrun with 2 gloo processes x batch 1 == 1 process x batch 2, step by step."""
    assert_two_processes_equal_one(
        tmp_path,
        "configs/tiny_wan_sspo.yaml",
        "--data.path",
        str(synth_data),
        "--data.frames",
        "5",
        "--data.height",
        "16",
        "--data.width",
        "16",
    )


def test_latent_cache_holds_windows_and_captions_so_no_encoder_runs_per_step(tiny_config, tmp_path, monkeypatch):
    """Wan's VAE compresses time: the cache holds each window a run can draw (7-frame clips, 5 frames: 3), encoded
    whole, and each caption's UMT5 embedding. A run from it gives the on-the-fly run's losses, and per step runs
    neither the VAE encoder nor the text encoder (the dropped caption "", also the negative prompt: once per run)."""
    from safetensors import safe_open

    from videosspo.synth import make_dataset

    data = make_dataset(tmp_path / "clips", n=2, frames=7, height=16, width=16, paired=True, progress=False)
    common = {
        **WAN,
        "data.path": str(data),
        "data.frames": 5,
        "data.height": 16,
        "data.width": 16,
        "train.max_steps": 3,
        "loser.guidance": 3.0,
        "data.caption_dropout": 0.5,
    }
    plain = Trainer(tiny_config(**common, **{"train.output_dir": str(tmp_path / "a")}))
    cache = cache_latents(plain.model, plain.data, tmp_path / "cache", progress=False)
    with safe_open(str(cache / "000000.safetensors"), framework="pt") as f:
        assert f.get_slice("latents").get_shape() == [3, 4, 2, 2, 2] == f.get_slice("loser_latents").get_shape()
    cached = Trainer(
        tiny_config(**common, **{"train.output_dir": str(tmp_path / "b"), "data.latent_cache": str(cache)})
    )
    for seed in range(4):  # the window VideoDataset draws, and the caption, as encoding them now gives
        fresh, stored = plain.data.get(1, seed), cached.data.get(1, seed)
        torch.testing.assert_close(stored["latents"], plain.model.encode_video(fresh["pixels"][None])[0])
        torch.testing.assert_close(stored["loser_latents"], plain.model.encode_video(fresh["loser_pixels"][None])[0])
        torch.testing.assert_close(stored["prompt_embeds"], plain.model.encode_prompt([fresh["caption"]])[0])
    calls = {"text": 0, "vae": 0}
    real_text, real_vae = cached.model.text_encoder.forward, cached.model.vae.encode
    monkeypatch.setattr(
        cached.model.text_encoder, "forward", lambda *a, **k: calls.update(text=calls["text"] + 1) or real_text(*a, **k)
    )
    monkeypatch.setattr(
        cached.model.vae, "encode", lambda *a, **k: calls.update(vae=calls["vae"] + 1) or real_vae(*a, **k)
    )
    after_steps = []
    plain.fit()
    cached.fit(on_step=lambda trainer: after_steps.append(dict(calls)))
    assert after_steps == [{"text": 1, "vae": 0}] * 3  # "" at step 1; samples at the end encode their prompts
    m1, m2 = ([json.loads(line) for line in open(tmp_path / d / "metrics.jsonl")] for d in ("a", "b"))
    assert any(m["loss/e_w"] for m in m1)
    for x, y in zip(m1, m2, strict=True):
        for key in ("loss", "loss/e_w", "rewards/delta_w", "rewards/delta_l", "grad_norm"):
            assert y[key] == pytest.approx(x[key], rel=1e-3, abs=1e-5), key


def test_trains_from_the_real_hub_layout(tiny_config, hub_layout):
    """The folder `WanPipeline.save_pretrained` writes, as Wan-AI/Wan2.1-T2V-1.3B-Diffusers holds it (UniPC scheduler)."""
    folder = hub_layout("Wan-AI/Wan2.1-T2V-1.3B-Diffusers")
    index = json.loads((folder / "model_index.json").read_text())
    assert (
        index["transformer"] == ["diffusers", "WanTransformer3DModel"]
        and index["scheduler"][1] == "UniPCMultistepScheduler"
    )
    trainer = Trainer(tiny_config(**WAN, **{"model.pretrained": str(folder), "train.max_steps": 1}))
    assert isinstance(trainer.model.scheduler, FlowMatchEulerDiscreteScheduler)
    assert trainer.model.scheduler.config.shift == 3.0  # from UniPC's flow_shift
    model = wan()  # the same seeded tiny weights the folder was written from
    x, t, cond = torch.randn(1, 4, 2, 4, 4), torch.tensor([700.0]), model.encode_prompt(PROMPTS[:1])
    with torch.no_grad():  # before training (LoRA B = 0) the loaded model is the saved one
        torch.testing.assert_close(trainer.model.predict(x, t, cond), model.predict(x, t, cond))
    assert trainer.fit()["steps"] == 1


def test_each_wan_layout_names_its_family_in_one_line(tiny_config, hub_layout):
    """Wan 2.2 A14B's folder (transformer + transformer_2, boundary_ratio) must not train as a one-transformer Wan
    (its `transformer` alone is the high-noise expert), nor a one-transformer folder as `wan22`."""
    folder = hub_layout("Wan-AI/Wan2.2-T2V-A14B-Diffusers")
    index = json.loads((folder / "model_index.json").read_text())
    assert index["boundary_ratio"] == 0.875 and index["transformer_2"] == ["diffusers", "WanTransformer3DModel"]
    with pytest.raises(
        ConfigError,
        match=r"two-expert Wan 2\.2 \(transformer for t >= 875, transformer_2 below.*"
        r"set model\.family: wan22$",
    ):
        Trainer(tiny_config(**WAN, **{"model.pretrained": str(folder)}))
    with pytest.raises(ConfigError, match=r"has one transformer \(no boundary_ratio.*set model\.family: wan$"):
        build_model(ModelConfig(family="wan22", pretrained=str(hub_layout("Wan-AI/Wan2.1-T2V-1.3B-Diffusers"))))
