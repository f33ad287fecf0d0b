"""Invariants that pin numbers, not lines (issue 21): one latent space for encode and decode, merged LoRA == peft's
merge, the reference's identity (Diffusion-DPO's θ0, no graph, the snapshot after evictions), the LR under
accumulation, samplers == their diffusers pipeline for the same seed, timesteps over the whole range, per-step
noise under loser reuse, caption dropout keyed on the global sample."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch
from diffusers import StableDiffusionPipeline
from einops import rearrange
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils import set_peft_model_state_dict
from test_trainer import grads_after_one_step

from models import build_model
from models.lora import add_lora
from videosspo import rng
from videosspo.config import ModelConfig
from videosspo.objectives import get_objective
from videosspo.reference import Policy, merge_lora
from videosspo.replay import ReplayPool
from videosspo.sampling import make_scheduler, sample_latents
from videosspo.trainer import Trainer

PROMPT = "a red square moving left"
_MODELS: dict = {}


def tiny(family: str):
    if family not in _MODELS:
        _MODELS[family] = build_model(ModelConfig(family=family))
    return _MODELS[family]


# -- encode and decode are inverse conventions of one latent space --------------------------------------------


def vae_round_trip(vae, pixels: torch.Tensor, per_frame: bool) -> torch.Tensor:
    """The VAE's own reconstruction of pixels `b c f h w`: its raw posterior mode, decoded, no scaling anywhere."""
    if per_frame:
        frames = rearrange(pixels, "b c f h w -> (b f) c h w")
        out = vae.decode(vae.encode(frames).latent_dist.mode()).sample
        return rearrange(out, "(b f) c h w -> b c f h w", b=pixels.shape[0]).clamp(-1, 1)
    return vae.decode(vae.encode(pixels).latent_dist.mode()).sample.clamp(-1, 1)


@pytest.mark.parametrize(
    "family, frames",
    [("sd", 1), ("animatediff", 2), ("modelscope", 2), ("wan", 5), ("wan22", 5), ("cogvideox", 9), ("ltx", 9)],
)
def test_encode_and_decode_are_inverse_conventions_of_one_latent_space(family, frames):
    """raw posterior -> training latent (`encode_video`: scale / normalise) -> what the sampler produces and `decode`
    takes (checked against each pipeline elsewhere) -> pixels: decode(encode(x)) is the VAE's own round trip, so the
    training latents live where the sampler's do (a scaling factor or a normalisation left out or inverted on one side
    moves them off it)."""
    model = tiny(family)
    pixels = torch.rand(1, 3, frames, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    latents = model.encode_video(pixels)
    assert latents.shape == (1, *model.latent_shape(frames, 32, 32))
    want = vae_round_trip(model.vae, pixels, per_frame=model.temporal_factor == 1)
    torch.testing.assert_close(model.decode(latents), want, rtol=1e-4, atol=1e-4)


# -- merged LoRA == peft's own merge, for lora_alpha != rank ---------------------------------------------------


def test_merged_lora_equals_peft_merge_with_alpha_not_rank():
    """W = W0 + (alpha / r) B A: our merge (what merged exports hold) == peft merging the same adapter in place."""
    model = copy.deepcopy(tiny("sd"))
    model.unet.requires_grad_(False)
    add_lora(model.unet, 4, 12.0, model.lora_scope)  # alpha / r = 3
    gen = torch.Generator().manual_seed(0)
    for name, p in model.unet.named_parameters():
        if "lora_B" in name:
            p.data = torch.randn(p.shape, generator=gen) * 0.1
    ours = merge_lora(model.unet, model.unet.state_dict())
    fused = copy.deepcopy(model.unet)
    for module in fused.modules():
        if isinstance(module, BaseTunerLayer):
            module.merge(adapter_names=["default"])
    theirs = {k.replace(".base_layer.", "."): v for k, v in fused.state_dict().items() if "lora_" not in k}
    assert ours.keys() == theirs.keys()
    assert all(torch.allclose(ours[k], theirs[k], atol=1e-6) for k in ours)
    plain = {k.replace(".base_layer.", "."): v for k, v in model.unet.state_dict().items() if "lora_" not in k}
    assert sum(not torch.equal(ours[k], plain[k]) for k in ours) > 0  # the LoRA moved some weights


# -- the reference ---------------------------------------------------------------------------------------------


def test_lora_reference_after_evictions_is_a_fresh_load_of_its_snapshot():
    """The reference adapter slot is reloaded when the snapshot at an index changes (evictions shift the pool):
    its outputs equal a fresh network carrying the snapshot drawn, never a stale one."""
    model = copy.deepcopy(tiny("sd"))
    model.unet.requires_grad_(False)
    add_lora(model.unet, 4, None, model.lora_scope)
    policy = Policy(model)
    pool = ReplayPool(size=2, interval=1, strategy="latest")
    gen = torch.Generator().manual_seed(1)

    def snapshot():
        return {
            k: torch.randn(v.shape, generator=gen) * 0.3 if "lora_B" in k else v for k, v in policy.snapshot().items()
        }

    c, f, h, w = model.latent_shape(1, 16, 16)
    x, t, cond = torch.randn(1, c, f, h, w, generator=gen), torch.tensor([500]), model.encode_prompt([PROMPT])
    pool.add(0, policy.snapshot())
    for step in (1, 2, 3):  # each add evicts the previous one: index 1 holds step 1, then 2, then 3
        pool.add(step, snapshot())
        assert pool.steps == [0, step]
        with torch.no_grad(), policy.reference(pool, 1) as ref:
            out = ref.predict(x, t, cond)
        fresh = copy.deepcopy(tiny("sd"))
        add_lora(fresh.unet, 4, None, fresh.lora_scope)
        set_peft_model_state_dict(fresh.unet, pool.get(1), adapter_name="default")
        with torch.no_grad():
            torch.testing.assert_close(out, fresh.predict(x, t, cond), rtol=1e-5, atol=1e-6)


def test_reference_pass_builds_no_graph_and_dpo_reference_is_theta0(tiny_config, synth_data, tmp_path, monkeypatch):
    """The reference errors carry no autograd graph (no activations kept, no gradient into the reference slot), and
    Diffusion-DPO's reference is the frozen initial model at every step, whatever replay.interval says."""
    seen = []
    for method, config in (("sspo", {}), ("dpo", {"data.path": str(paired(synth_data, tmp_path))})):
        trainer = Trainer(
            tiny_config(
                **{
                    "method.name": method,
                    "model.lora_rank": 4,
                    "train.max_steps": 3,
                    "replay.interval": 1,
                    "train.log_every": 1,
                    "train.output_dir": str(tmp_path / method),
                    **config,
                }
            )
        )
        loss_fn = trainer.loss_fn

        def spy(e_w, e_l, ref_w, ref_l, loss_fn=loss_fn, **kwargs):
            seen.append(ref_w.requires_grad or ref_w.grad_fn is not None)
            return loss_fn(e_w, e_l, ref_w, ref_l, **kwargs)

        trainer.loss_fn = spy
        trainer.fit()
        if method == "dpo":
            metrics = [json.loads(line) for line in (tmp_path / method / "metrics.jsonl").read_text().splitlines()]
            assert [m["replay/ref_step"] for m in metrics] == [0.0, 0.0, 0.0] and trainer.pool.steps == [0]
    assert seen and not any(seen)


def paired(synth_data, tmp_path):
    """The synthetic clips with each clip's successor as its loser (Diffusion-DPO needs pairs)."""
    rows = [json.loads(line) for line in (synth_data / "metadata.jsonl").read_text().splitlines()]
    out = tmp_path / "paired.jsonl"
    out.write_text(
        "".join(
            json.dumps(
                {
                    **r,
                    "video": str(synth_data / r["video"]),
                    "loser_video": str(synth_data / rows[(i + 1) % len(rows)]["video"]),
                }
            )
            + "\n"
            for i, r in enumerate(rows)
        )
    )
    return out


# -- optimisation under accumulation ---------------------------------------------------------------------------


def test_lr_at_every_step_under_accumulation_equals_the_unaccumulated_runs(tiny_config, tmp_path):
    """The LR schedule counts optimizer steps: with warm-up, step k's LR is the same for accumulation 2 as for 1."""
    lrs = []
    for accum, batch in ((1, 2), (2, 1)):
        out = tmp_path / f"a{accum}"
        Trainer(
            tiny_config(
                **{
                    "method.name": "sft",
                    "optim.grad_accum": accum,
                    "optim.batch_size": batch,
                    "optim.warmup_steps": 4,
                    "train.max_steps": 3,
                    "train.log_every": 1,
                    "train.output_dir": str(out),
                }
            )
        ).fit()
        lrs.append([json.loads(line)["lr"] for line in (out / "metrics.jsonl").read_text().splitlines()])
    assert lrs[0] == lrs[1] and len(set(lrs[0])) == 3  # warm-up: three different values, the same in both


def test_caption_dropout_is_keyed_on_the_global_sample_so_accumulation_1x2_equals_2x1(tiny_config):
    """Caption dropout draws from (seed, step, global position): which captions drop does not depend on how the
    global batch is cut into micro-batches (nor processes)."""
    common = {"method.name": "sft", "data.caption_dropout": 0.5, "optim.max_grad_norm": 0}
    for seed in range(4):  # a seed where the two samples' draws differ (one dropped, one kept)
        drops = rng.drop_captions(0.5, seed, 0, [0, 1])
        if drops[0] != drops[1]:
            break
    big = grads_after_one_step(Trainer(tiny_config(**common, **{"optim.batch_size": 2, "train.seed": seed})))
    acc = grads_after_one_step(
        Trainer(tiny_config(**common, **{"optim.batch_size": 1, "optim.grad_accum": 2, "train.seed": seed}))
    )
    scale = max(g.abs().max() for g in big.values())
    assert max((big[k] - acc[k]).abs().max() for k in big) < 1e-4 * scale


# -- samplers == their diffusers pipeline for the same seed ----------------------------------------------------


@pytest.mark.parametrize("sampler", ["euler", "ddim", "dpm++", "unipc"])
def test_samplers_equal_the_pipeline_for_the_same_seed(sampler, hub_layout):
    """Our loop == StableDiffusionPipeline with that scheduler and `generator=seed`: the same initial noise (Euler's
    scaled by `init_noise_sigma`), input scaling and steps. (SD 1.5's folder: the pipeline rewrites a
    schedule's `steps_offset` 0 to 1, the tiny model's 0 would not compare.)"""
    model = build_model(
        ModelConfig(family="sd", pretrained=str(hub_layout("stable-diffusion-v1-5/stable-diffusion-v1-5")))
    )
    sched = make_scheduler(model, sampler)
    pipe = StableDiffusionPipeline(
        vae=model.vae,
        text_encoder=model.text_encoder,
        tokenizer=model.tokenizer,
        unet=model.unet,
        scheduler=sched,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    theirs = pipe(
        PROMPT,
        height=16,
        width=16,
        num_inference_steps=3,
        guidance_scale=5.0,
        output_type="latent",
        generator=torch.Generator().manual_seed(7),
    ).images
    ours = sample_latents(
        model, [PROMPT], frames=1, height=16, width=16, seeds=[7], steps=3, guidance=5.0, scheduler=sampler
    )
    torch.testing.assert_close(ours[:, :, 0], theirs, rtol=1e-4, atol=1e-4)
    if sampler == "euler":
        assert float(sched.init_noise_sigma) > 2  # √(σ_max² + 1) of the 3-step grid: the noise is scaled


# -- the training draws ----------------------------------------------------------------------------------------


def test_training_timesteps_cover_the_whole_range_including_the_last():
    """t ~ U{lo T, ..., hi T − 1}: every value, the last index included, and none outside (T = 8 to see them all)."""
    sched = copy.deepcopy(tiny("sd").scheduler)
    sched.register_to_config(num_train_timesteps=8)
    draw = get_objective("epsilon").timesteps
    assert set(draw(sched, 0, 0, list(range(400))).tolist()) == set(range(8))
    assert set(draw(sched, 0, 0, list(range(400)), sigma_range=(0.5, 1.0)).tolist()) == set(range(4, 8))
    assert set(draw(sched, 0, 0, list(range(400)), sigma_range=(0.0, 0.5)).tolist()) == set(range(4))


def test_noise_and_timestep_are_drawn_per_step_inside_a_loser_reuse_window(tiny_config, monkeypatch):
    """loser.reuse keeps the batch and its losers for a window; the training noise and timestep still come from
    (seed, step, position), so each step of the window sees new ones."""
    import videosspo.trainer as trainer_module

    drawn = []
    real = trainer_module.rng.sample_noise
    monkeypatch.setattr(trainer_module.rng, "sample_noise", lambda *a: drawn.append(real(*a)) or drawn[-1])
    trainer = Trainer(
        tiny_config(**{"loser.reuse": 3, "loser.guidance": 3.0, "train.max_steps": 3, "train.guard": "off"})
    )  # its fixed-batch probe draws noise too
    timesteps = []
    real_t = trainer_module.get_objective(trainer.model.objective).timesteps
    monkeypatch.setattr(
        trainer_module,
        "get_objective",
        lambda name: dataclasses.replace(
            get_objective(name), timesteps=lambda *a, **k: timesteps.append(real_t(*a, **k)) or timesteps[-1]
        ),
    )
    trainer.fit()
    assert len(drawn) == len(timesteps) == 3  # one draw per step, all inside one reuse window
    for step in range(3):  # each from its own step
        assert torch.equal(drawn[step], rng.sample_noise(drawn[0].shape[1:], 0, step, [0, 1]))
        assert torch.equal(timesteps[step], rng.sample_timesteps(1000, 0, step, [0, 1]))
    assert not torch.equal(timesteps[0], timesteps[1]) and not torch.equal(drawn[1], drawn[2])


# -- Wan 2.2 A14B: the step at exactly the boundary, and the losers' second scale -----------------------------


def test_wan22_step_at_exactly_the_boundary_is_a_high_noise_step_as_in_wan_pipeline():
    """WanPipeline: t >= boundary -> `transformer` and `guidance_scale`. With the boundary on a sampled timestep
    (UniPC 4 steps: 999, 900, 750, 500; boundary_ratio 0.75), that step runs the high-noise expert at CFG 4."""
    from test_dit import PROMPTS, pipeline

    model = copy.copy(tiny("wan22"))
    model.unet = copy.deepcopy(model.unet)
    model.unet.register_to_config(boundary_ratio=0.75)
    assert model.boundary_timestep == 750.0
    shape = model.latent_shape(5, 32, 32)
    ours = sample_latents(
        model,
        PROMPTS[:1],
        frames=5,
        height=32,
        width=32,
        seeds=[3],
        steps=4,
        guidance=4.0,
        guidance_2=2.0,
        scheduler="unipc",
    )
    pipe = pipeline(model)
    theirs = pipe(
        PROMPTS[0],
        negative_prompt="",
        height=32,
        width=32,
        num_frames=5,
        num_inference_steps=4,
        guidance_scale=4.0,
        guidance_scale_2=2.0,
        generator=torch.Generator().manual_seed(3),
        max_sequence_length=16,
        output_type="latent",
    ).frames
    assert 750 in pipe.scheduler.timesteps.tolist()
    torch.testing.assert_close(ours, theirs)
    assert shape == ours.shape[1:]


def test_wan22_losers_are_sampled_with_the_loser_guidance_2(tiny_config, monkeypatch):
    """The losers of a two-expert model use loser.guidance on the high-noise steps and loser.guidance_2 below, as
    the samples do: the sampler receives both."""
    import videosspo.losers as losers_module

    seen = []
    real = losers_module.sample_latents
    monkeypatch.setattr(
        losers_module,
        "sample_latents",
        lambda *a, **k: seen.append((k["guidance"], k.get("guidance_2"))) or real(*a, **k),
    )
    trainer = Trainer(
        tiny_config(
            "tiny_wan22_sspo.yaml",
            **{
                "loser.guidance": 3.0,
                "loser.guidance_2": 1.5,
                "loser.steps": 2,
                "train.max_steps": 1,
                "data.frames": 5,
                "data.height": 32,
                "data.width": 32,
            },
        )
    )
    trainer.losers.sample(next(iter(trainer.stream.loader(trainer.step))), 0)
    assert seen == [(3.0, 1.5)]


def test_ltx_trains_with_the_timestep_shift_of_its_latent_sequence_length(tiny_config, monkeypatch):
    """LTX-Video's σ density is shifted by μ(L), L = f·h·w latent positions (channels not counted): the trainer's
    timesteps are the objective's for that L, and differ from those for c·f·h·w."""
    from test_dit import LTX

    seen = []
    trainer = Trainer(tiny_config(**{**LTX, "method.name": "sft", "train.max_steps": 1}))
    trainer.model.unet.register_forward_pre_hook(lambda m, a, k: seen.append(k["timestep"].clone()), with_kwargs=True)
    batch = next(iter(trainer.stream.loader(trainer.step)))
    trainer.loss(batch)
    c, f, h, w = trainer.model.latent_shape(9, 32, 32)
    draw = get_objective("flow_shifted_logit_normal").timesteps
    sched = trainer.model.scheduler
    torch.testing.assert_close(seen[0], draw(sched, 0, 0, batch["positions"], seq_len=f * h * w))
    assert not torch.allclose(seen[0], draw(sched, 0, 0, batch["positions"], seq_len=c * f * h * w))


# -- the data stream: epochs and frame windows keyed on the stream position ------------------------------------


def test_each_epoch_is_a_new_permutation_and_each_read_of_a_clip_a_new_frame_window():
    """Stream position p reads clip epoch_order(seed, p // n)[p % n] with its frame window seeded by p: every epoch
    is a permutation of the clips, epochs differ, and a clip read again in a later epoch gets a fresh window."""
    from videosspo.stream import StreamDataset, StreamSampler

    n = 6
    reads = iter(StreamSampler(n=n, batch=1, accum=1, processes=1, rank=0, seed=0, start_step=0))
    stream = [next(reads)[0] for _ in range(3 * n)]  # (index, position)
    assert [p for _, p in stream] == list(range(3 * n))
    epochs = [[i for i, _ in stream[e * n : (e + 1) * n]] for e in range(3)]
    assert all(sorted(e) == list(range(n)) for e in epochs) and epochs[0] != epochs[1] != epochs[2]
    seeds = {}

    class Recorder:
        def try_get(self, index, seed):
            seeds.setdefault(index, []).append(seed)
            return {}

    data = StreamDataset(Recorder(), seed=0)
    for item in stream:
        data[item]
    assert all(len(set(s)) == 3 for s in seeds.values())  # three reads of each clip, three windows
    assert seeds[stream[0][0]][0] == rng.derive_seed(0, 0, 0, "frames")
