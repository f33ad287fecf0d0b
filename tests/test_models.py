"""Model adapters: the `b c f h w` shape contract of every family x VAE, save/load round trips
(ours and diffusers' own classes), AnimateDiff from an SD layout + a MotionAdapter folder, the
tokenizer, chunked VAE calls, and the image family's frame independence."""

from __future__ import annotations

import pytest
import torch
from diffusers import MotionAdapter, UNet2DConditionModel, UNet3DConditionModel, UNetMotionModel
from transformers import CLIPTokenizer

from models import FAMILIES, build_model, load_model
from models.base import MODEL_FILE
from models.tiny import CHANNELS, tiny_unet2d_kwargs
from videosspo.config import ModelConfig

FAMILY_NAMES = ("animatediff", "modelscope", "sd")
UNET_CLASS = {"animatediff": UNetMotionModel, "modelscope": UNet3DConditionModel, "sd": UNet2DConditionModel}
CASES = [(f, v) for f in FAMILY_NAMES for v in ("auto", "none")]
IDS = [f"{f}-{v}" for f, v in CASES]
PROMPTS = ["a red square moving left", "a blue circle moving up"]
H = W = 16

_CACHE: dict = {}


def tiny(family: str, vae: str = "auto"):
    """The family's tiny model, built once per test session (building is deterministic: seed 0)."""
    key = (family, vae)
    if key not in _CACHE:
        _CACHE[key] = build_model(ModelConfig(family=family, vae=vae))
    return _CACHE[key]


def inputs(model, frames: int, b: int = 2, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, *model.latent_shape(frames, H, W), generator=gen)
    t = torch.tensor([10, 700, 300, 999][:b])
    return x, t, model.encode_prompt(PROMPTS[:b] if b <= 2 else PROMPTS * b)[:b]


# -- shape contract ------------------------------------------------------------------------------


def test_registry_and_unknown_family():
    assert set(FAMILIES) == {
        *FAMILY_NAMES,
        "stacked",
        "wan",
        "wan22",
        "cogvideox",
        "ltx",
    }  # test_alignment, test_dit, test_wan22
    with pytest.raises(ValueError, match=r"model\.family='svd'.*animatediff"):
        build_model(ModelConfig(family="svd"))


@pytest.mark.parametrize("family, vae", CASES, ids=IDS)
def test_shape_contract(family, vae):
    model = tiny(family, vae)
    assert isinstance(model.unet, UNET_CLASS[family])
    c = 4 if vae == "auto" else 3
    k = 2 if vae == "auto" else 1
    assert model.latent_shape(3, H, W) == (c, 3, H // k, W // k)
    x, t, cond = inputs(model, frames=3)
    assert cond.shape == (2, 77, 32)
    with torch.no_grad():
        out = model.predict(x, t, cond)
    assert out.shape == x.shape and torch.isfinite(out).all()
    pixels = torch.rand(2, 3, 3, H, W) * 2 - 1
    latents = model.encode_video(pixels)
    assert latents.shape == (2, *model.latent_shape(3, H, W))
    decoded = model.decode(latents)
    assert decoded.shape == pixels.shape
    assert decoded.min() >= -1 and decoded.max() <= 1
    if vae == "none":  # pixel space: the latents are the pixels
        assert torch.equal(latents, pixels) and torch.equal(decoded, pixels)


def test_predict_rejects_4d_latents():
    model = tiny("sd")
    x, t, cond = inputs(model, frames=1)
    with pytest.raises(AssertionError, match="b c f h w"):
        model.predict(x[:, :, 0], t, cond)


def test_latent_shape_rejects_sizes_off_the_vae_factor():
    with pytest.raises(ValueError, match=r"15x16.*VAE factor 2"):
        tiny("sd").latent_shape(1, 15, 16)
    assert tiny("sd", "none").latent_shape(1, 15, 16) == (3, 1, 15, 16)


@pytest.mark.parametrize("frames", [1, 3])
def test_sd_images_and_clips_through_the_same_code(frames):
    model = tiny("sd")
    x, t, cond = inputs(model, frames=frames)
    with torch.no_grad():
        out = model.predict(x, t, cond)
    assert out.shape == (2, 4, frames, H // 2, W // 2)
    pixels = torch.rand(2, 3, frames, H, W) * 2 - 1
    assert model.decode(model.encode_video(pixels)).shape == pixels.shape


def test_sd_frames_are_independent_images():
    model = tiny("sd")
    x, t, cond = inputs(model, frames=3)
    with torch.no_grad():
        clip = model.predict(x, t, cond)
        per_frame = torch.cat([model.predict(x[:, :, i : i + 1], t, cond) for i in range(3)], dim=2)
        # ... and equal to the raw 2-D UNet on each frame
        raw = model.unet(x[:, :, 1], t, encoder_hidden_states=cond).sample
    torch.testing.assert_close(clip, per_frame, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(clip[:, :, 1], raw, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_batch_entries_are_independent(family):
    """Sample i's output depends only on its own (x, t, cond): a batch equals its samples alone."""
    model = tiny(family)
    x, t, cond = inputs(model, frames=2)
    with torch.no_grad():
        batch = model.predict(x, t, cond)
        alone = torch.cat([model.predict(x[i : i + 1], t[i : i + 1], cond[i : i + 1]) for i in range(2)])
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family", ["animatediff", "modelscope"])
def test_video_families_mix_frames(family):
    """The motion/temporal layers make a frame's output depend on the other frames (unlike sd)."""
    model = tiny(family)
    x, t, cond = inputs(model, frames=3)
    x2 = x.clone()
    x2[:, :, 2] += 1.0
    with torch.no_grad():
        a, b = model.predict(x, t, cond), model.predict(x2, t, cond)
    assert not torch.allclose(a[:, :, 0], b[:, :, 0], atol=1e-6)


# -- save / load ---------------------------------------------------------------------------------


@pytest.mark.parametrize("family, vae", CASES, ids=IDS)
def test_save_load_round_trip(family, vae, tmp_path):
    model = tiny(family, vae)
    path = tmp_path / "model"  # as inside a training checkpoint folder
    model.save_pretrained(path)
    for name in ("unet", "text_encoder", "tokenizer", "scheduler") + (("vae",) if vae == "auto" else ()):
        assert (path / name).is_dir()
    assert (path / "vae").exists() == (vae == "auto")
    loaded = load_model(path)
    assert type(loaded) is type(model) and (loaded.vae is None) == (vae == "none")
    x, t, _ = inputs(model, frames=3)
    with torch.no_grad():
        want = model.predict(x, t, model.encode_prompt(PROMPTS))
        got = loaded.predict(x, t, loaded.encode_prompt(PROMPTS))
    assert torch.equal(want, got)
    assert loaded.scheduler.config.prediction_type == model.scheduler.config.prediction_type
    # The real-weights path: the saved unet/ is a plain diffusers folder.
    unet = UNET_CLASS[family].from_pretrained(path, subfolder="unet")
    reference = model.unet.state_dict()
    assert unet.state_dict().keys() == reference.keys()
    assert all(torch.equal(v, reference[k]) for k, v in unet.state_dict().items())
    # load_model also takes the checkpoint folder holding model/.
    assert type(load_model(tmp_path)) is type(model)


def test_pretrained_dir_builds_each_family(tmp_path):
    """`pretrained=` a local diffusers folder (what a hub download is) goes through load_components."""
    model = tiny("modelscope")
    model.save_pretrained(tmp_path)
    (tmp_path / MODEL_FILE).unlink()  # a plain diffusers layout, not a videosspo checkpoint
    loaded = build_model(ModelConfig(family="modelscope", pretrained=str(tmp_path), vae_chunk_frames=3))
    assert loaded.vae_chunk_frames == 3 and loaded.vae is not None
    x, t, _ = inputs(model, frames=2)
    with torch.no_grad():
        assert torch.equal(
            model.predict(x, t, model.encode_prompt(PROMPTS)), loaded.predict(x, t, loaded.encode_prompt(PROMPTS))
        )


def test_pretrained_without_vae_asks_for_vae_none(tmp_path):
    tiny("sd", "none").save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no loadable vae/.*model\.vae: none"):
        build_model(ModelConfig(family="sd", pretrained=str(tmp_path), vae="auto"))


def test_load_model_rejects_other_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"not a videosspo model directory"):
        load_model(tmp_path)


def test_tokenizer_round_trip(tmp_path):
    tok = tiny("sd").tokenizer
    ids = tok(PROMPTS, padding="max_length", max_length=tok.model_max_length, truncation=True).input_ids
    assert all(len(row) == 77 for row in ids)
    assert [tok.decode(row, skip_special_tokens=True) for row in ids] == PROMPTS
    tok.save_pretrained(tmp_path)
    again = CLIPTokenizer.from_pretrained(tmp_path)
    assert again.model_max_length == 77 and len(again) == len(tok)
    assert again(PROMPTS, padding="max_length", max_length=77, truncation=True).input_ids == ids
    # Bytes outside ASCII survive too (byte-level vocabulary, no unknown token).
    text = "un café über naïve"
    assert again.decode(again(text).input_ids, skip_special_tokens=True) == text


# -- AnimateDiff from an SD-1.5-style layout + a MotionAdapter folder --------------------------------


@pytest.fixture(scope="module")
def sd_layout(tmp_path_factory):
    """A base folder as users have it (unet/ vae/ text_encoder/ tokenizer/ scheduler/) + an adapter folder."""
    root = tmp_path_factory.mktemp("animatediff_layout")
    base = tiny("sd")
    base.save_pretrained(root / "sd")
    (root / "sd" / MODEL_FILE).unlink()
    torch.manual_seed(1)
    adapter = MotionAdapter(
        block_out_channels=CHANNELS,
        motion_layers_per_block=1,
        motion_norm_num_groups=8,
        motion_num_attention_heads=4,
        motion_max_seq_length=32,
    )
    adapter.save_pretrained(root / "adapter")
    return root / "sd", root / "adapter", base.unet, adapter


def test_animatediff_from_sd_layout_and_motion_adapter(sd_layout, tmp_path):
    base_dir, adapter_dir, unet2d, adapter = sd_layout
    model = build_model(ModelConfig(family="animatediff", pretrained=str(base_dir), motion_adapter=str(adapter_dir)))
    assert isinstance(model.unet, UNetMotionModel)
    # The spatial weights are the SD UNet's, the temporal ones the adapter's.
    state = model.unet.state_dict()
    assert torch.equal(state["conv_in.weight"], unet2d.conv_in.weight)
    motion = {k: v for k, v in state.items() if "motion_modules" in k}
    assert motion.keys() == adapter.state_dict().keys()
    assert all(torch.equal(v, adapter.state_dict()[k]) for k, v in motion.items())
    x, t, cond = inputs(model, frames=3)
    with torch.no_grad():
        out = model.predict(x, t, cond)
    assert out.shape == x.shape and torch.isfinite(out).all()
    # Saved, it is a merged UNetMotionModel that loads without the adapter.
    model.save_pretrained(tmp_path)
    again = load_model(tmp_path)
    with torch.no_grad():
        assert torch.equal(out, again.predict(x, t, again.encode_prompt(PROMPTS)))


def test_animatediff_without_motion_adapter_is_a_clear_error(sd_layout):
    base_dir = sd_layout[0]
    with pytest.raises(ValueError, match=r"holds a 2-D UNet: set model\.motion_adapter"):
        build_model(ModelConfig(family="animatediff", pretrained=str(base_dir)))


def test_sd_family_loads_the_same_layout(sd_layout):
    base_dir, _, unet2d, _ = sd_layout
    model = build_model(ModelConfig(family="sd", pretrained=str(base_dir)))
    assert all(torch.equal(v, unet2d.state_dict()[k]) for k, v in model.unet.state_dict().items())


def test_tiny_unet2d_kwargs_match_the_sd_unet():
    assert tiny("sd").unet.config.block_out_channels == tuple(tiny_unet2d_kwargs(4, 32)["block_out_channels"])


# -- chunked VAE -----------------------------------------------------------------------------------


def test_vae_chunking_does_not_change_results():
    model = tiny("animatediff")
    pixels = torch.rand(2, 3, 3, H, W) * 2 - 1
    model.vae_chunk_frames = 16
    try:
        whole_latents, whole_pixels = model.encode_video(pixels), None
        whole_pixels = model.decode(whole_latents)
        model.vae_chunk_frames = 1
        torch.testing.assert_close(model.encode_video(pixels), whole_latents, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(model.decode(whole_latents), whole_pixels, atol=1e-5, rtol=1e-4)
    finally:
        model.vae_chunk_frames = 16
    # Per frame, and deterministic (the posterior mode): a cached latent equals a fresh one.
    torch.testing.assert_close(
        model.encode_video(pixels[:, :, 1:2])[:, :, 0], whole_latents[:, :, 1], atol=1e-5, rtol=1e-4
    )
    assert torch.equal(model.encode_video(pixels), whole_latents)


# -- gradient checkpointing where diffusers has none: the ModelScope UNet, AnimateDiff's motion modules ----


@pytest.mark.parametrize(
    "family, module",
    [("modelscope", "down_blocks.0.resnets.0"), ("animatediff", "down_blocks.0.motion_modules.0.proj_in")],
)
def test_gradient_checkpointing_recomputes_and_keeps_gradients(family, module):
    model = build_model(ModelConfig(family=family))
    model.unet.eval()  # no dropout: the two passes compare like for like (eval mode still backpropagates)
    x, t, cond = inputs(model, frames=2)
    calls = []
    model.unet.get_submodule(module).register_forward_hook(lambda *_: calls.append(1))

    def grads():
        model.unet.zero_grad()
        model.predict(x, t, cond).square().mean().backward()
        return {n: p.grad.clone() for n, p in model.unet.named_parameters()}

    plain = grads()
    assert len(calls) == 1
    model.enable_gradient_checkpointing()
    checkpointed = grads()
    assert len(calls) == 3  # forward, then recomputed in the backward pass
    assert checkpointed.keys() == plain.keys()
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    # A deep copy (the full fine-tuning reference) runs its own weights, not the original's.
    copy = __import__("copy").copy(model)
    copy.unet = __import__("copy").deepcopy(model.unet)
    torch.nn.init.zeros_(copy.unet.conv_out.weight), torch.nn.init.zeros_(copy.unet.conv_out.bias)
    with torch.no_grad():
        assert copy.predict(x, t, cond).abs().max() == 0


def test_lora_init_depends_on_its_seed_alone():
    """add_lora draws lora_A from its `seed`, whatever the global RNG holds (peft draws from the global
    RNG), and leaves the global RNG where it was: the same seed gives the same adapter, another seed another."""
    from models.lora import add_lora

    def adapter(seed: int, global_seed: int) -> dict:
        torch.manual_seed(0)
        unet = UNet2DConditionModel(**tiny_unet2d_kwargs(4, 32))
        torch.manual_seed(global_seed)
        before = torch.random.get_rng_state()
        add_lora(unet, 4, None, ("to_q", "to_v"), seed=seed)
        assert torch.equal(torch.random.get_rng_state(), before)
        return {k: v.clone() for k, v in unet.state_dict().items() if "lora_A" in k}

    a, b, c = adapter(7, global_seed=1), adapter(7, global_seed=2), adapter(8, global_seed=1)
    assert a and a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
