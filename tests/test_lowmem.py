"""Low-memory training: float8 frozen weights (models/fp8.py) and block swap (models/offload.py) on the tiny families.

On CPU a block swap's moves are no-ops, so the schedule is tested with released weights poisoned (NaN): any use
of a block that is not resident shows in the outputs or gradients, which must equal the unswapped model's."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import WanPipeline, WanTransformer3DModel
from test_dit import TRAIN
from test_trainer import straight_and_resumed, unet_state

from models import build_model, load_model
from models.fp8 import (
    FP8,
    SKIP,
    enable_fp8_storage,
    quantizable,
    quantize,
    weight_bytes,
)
from models.lora import add_lora
from models.offload import enable_block_swap
from videosspo.config import ConfigError, ModelConfig
from videosspo.memory import ARCHITECTURES
from videosspo.trainer import Trainer

FRAMES = {"wan": 9, "wan22": 9, "cogvideox": 9, "ltx": 9, "animatediff": 2, "modelscope": 2, "sd": 1}
NAN = lambda stored: torch.full_like(stored, float("nan"))


def lora_model(family: str, checkpointing: bool = False):
    """The tiny `family` with LoRA (B random, so the adapter matters), its latents, timesteps and text."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(family=family, lora_rank=4))
    model.unet.requires_grad_(False)
    add_lora(model.unet, 4, None, model.lora_scope)
    for name, p in model.unet.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.1)
    if checkpointing:
        model.enable_gradient_checkpointing()
    c, f, h, w = model.latent_shape(FRAMES[family], 32, 32)
    x = torch.randn(2, c, f, h, w, generator=torch.Generator().manual_seed(1))
    return model, (x, torch.tensor([500.0, 900.0]), model.encode_prompt(["a red square moving left", "a"]))


def forward_backward(model, inputs):
    """Output and every gradient (the input's, the adapters') of a squared-output loss."""
    x = inputs[0].clone().requires_grad_(True)
    out = model.predict(x, *inputs[1:])
    out.square().mean().backward()
    grads = {name: p.grad.clone() for name, p in model.unet.named_parameters() if p.grad is not None}
    model.unet.zero_grad(set_to_none=True)
    return out.detach(), {"x": x.grad, **grads}


# -- float8 storage -------------------------------------------------------------------------------------------


def test_diffusers_layerwise_casting_keeps_compute_copies_for_backward_fp8_storage_does_not():
    """Why models/fp8.py: under training diffusers' `enable_layerwise_casting` leaves autograd holding each layer's
    up-cast (compute-dtype) weight until the backward pass; the float8 layers keep only float8 weights."""

    def saved_weights(model, inputs):  # {dtype: bytes} of saved tensors that are a layer's weight as it computed
        layers = [m for n, m in model.unet.named_modules() if isinstance(m, torch.nn.Linear) and quantizable(n, m)]
        kept = {}

        def pack(t):
            if any(t.untyped_storage()._cdata == m.weight.untyped_storage()._cdata for m in layers):
                kept[t.dtype] = kept.get(t.dtype, 0) + t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model.predict(inputs[0].requires_grad_(True), *inputs[1:])
        return kept

    model, inputs = lora_model("wan")
    model.unet.enable_layerwise_casting(storage_dtype=FP8, compute_dtype=torch.float32, skip_modules_pattern=SKIP)
    assert saved_weights(model, inputs)[torch.float32] > 0  # full-precision weight copies wait for the backward
    model, inputs = lora_model("wan")
    enable_fp8_storage(model.unet)
    assert set(saved_weights(model, inputs)) == {FP8}


@pytest.mark.parametrize("family", ["wan", "cogvideox", "ltx", "wan22", "animatediff", "modelscope"])
def test_fp8_halves_weight_bytes_and_keeps_adapters_in_training_dtype(family):
    model, _ = lora_model(family)
    unet = model.unet
    layers = [m for n, m in unet.named_modules() if quantizable(n, m)]
    bf16 = sum(m.weight.to(torch.bfloat16).numel() * 2 for m in layers)  # those weights as bf16 tensors, in bytes
    enable_fp8_storage(unet)
    assert sum(m.weight.numel() * m.weight.element_size() for m in layers) * 2 == bf16
    assert all(m.weight.dtype == FP8 for m in layers) and unet.dtype == torch.float32  # what text embeddings follow
    assert {p.dtype for n, p in unet.named_parameters() if "lora_" in n} == {torch.float32}
    assert weight_bytes(unet)["float8_e4m3fn"] == bf16 // 2
    assert all(v.dtype == torch.float32 for v in unet.state_dict().values() if v.is_floating_point())  # never float8


def test_a_real_wan_is_almost_all_float8():
    """On the published Wan 2.1 architectures (built on the meta device) the float8 layers hold > 98% of the
    weights, so the frozen base's bytes halve against bf16 but for < 2% (embeddings, norms, the output head)."""
    for name in ("wan2.1-1.3b", "wan2.1-14b"):
        with init_empty_weights():
            unet = WanTransformer3DModel.from_config(ARCHITECTURES[name]["denoiser"]).requires_grad_(False)
        total = sum(p.numel() for p in unet.parameters())
        fp8 = sum(m.weight.numel() for n, m in unet.named_modules() if quantizable(n, m))
        assert fp8 / total > 0.98, (name, fp8 / total)


def test_per_channel_scales_by_hand():
    w = torch.tensor([[0.5, -0.25], [0.0, 0.0], [448.0, 1.0]])
    w8, scale = quantize(w)
    assert scale.tolist() == pytest.approx([0.5 / 448, 1.0, 1.0], rel=1e-7) and w8.dtype == FP8
    assert w8.float()[0].tolist() == [448.0, -224.0] and w8.float()[2].tolist() == [448.0, 1.0]


@pytest.mark.parametrize("family", ["wan", "cogvideox", "ltx", "wan22", "animatediff", "modelscope", "sd"])
def test_fp8_outputs_and_gradients(family):
    """Exactly the model whose weights are the de-quantized ones (gradients too: the backward's up-cast and the
    transposed convolutions are right); within 8% (relative L2) of full precision on the tiny random models
    (measured 1.5-5.5%; bf16 1-1.3%)."""
    model, inputs = lora_model(family)
    full = copy.deepcopy(model)
    bf16_out = None
    enable_fp8_storage(model.unet)
    dequantized = copy.copy(full)
    dequantized.unet = copy.deepcopy(full.unet)
    dequantized.unet.load_state_dict(model.unet.state_dict())  # W' = w8 s in float32
    out, grads = forward_backward(model, inputs)
    ref_out, ref_grads = forward_backward(dequantized, inputs)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    assert grads.keys() == ref_grads.keys() and len(grads) > 1
    for k in grads:
        torch.testing.assert_close(grads[k], ref_grads[k], rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        exact = full.predict(*inputs)
        rel = ((model.predict(*inputs) - exact).norm() / exact.norm()).item()
        bf16 = copy.copy(full)
        bf16.unet = copy.deepcopy(full.unet).to(torch.bfloat16)
        bf16_out = bf16.predict(inputs[0].bfloat16(), inputs[1], inputs[2].bfloat16()).float()
        rel_bf16 = ((bf16_out - exact).norm() / exact.norm()).item()
    print(f"{family}: fp8 {rel:.4f} bf16 {rel_bf16:.4f}")
    assert 0 < rel < 0.08, (rel, rel_bf16)  # e4m3 keeps 3 mantissa bits, bf16 7


def test_fp8_state_dict_round_trips():
    """Loading the (de-quantized) state dict quantizes it again to the same float8 weights and scales."""
    model, _ = lora_model("animatediff")
    enable_fp8_storage(model.unet)
    before = {n: b.clone() for n, b in model.unet.named_buffers()} | {
        n: p.clone() for n, p in model.unet.named_parameters()
    }
    model.unet.load_state_dict(model.unet.state_dict())
    after = {n: b for n, b in model.unet.named_buffers()} | dict(model.unet.named_parameters())
    assert all(torch.equal(before[k].float(), after[k].float()) for k in before)


# -- block swap -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "family, checkpointing, fp8",
    [
        ("wan", False, False),
        ("wan", True, True),
        ("cogvideox", True, False),
        ("ltx", False, True),
        ("wan22", True, True),
        ("animatediff", True, False),
        ("animatediff", False, True),
        ("modelscope", True, True),
    ],
)
def test_block_swap_schedule_outputs_and_gradients(family, checkpointing, fp8):
    model, inputs = lora_model(family, checkpointing)
    if fp8:
        enable_fp8_storage(model.unet)
    want_out, want_grads = forward_backward(model, inputs)
    n = 1 if family == "cogvideox" else 2
    swap = enable_block_swap(model.unet, n, "cpu", absent=NAN)
    seen = []  # (block, resident blocks) at each block's forward, after the swap's own hook
    for i, block in enumerate(swap.blocks):
        block.register_forward_pre_hook(lambda m, a, i=i: seen.append((i, set(swap.resident))))
    out, grads = forward_backward(model, inputs)
    assert torch.equal(out, want_out)
    assert grads.keys() == want_grads.keys() and all(torch.equal(grads[k], want_grads[k]) for k in grads)
    assert all(resident == {i} for i, resident in seen)  # each block alone on the "device" while it runs
    forward = [i for i, _ in seen[: len(swap.blocks)]]
    assert forward == list(range(len(swap.blocks)))
    backward = [i for op, i in swap.log[len(swap.blocks) + 2 * len(swap.blocks) :] if op == "in"]
    single_list = family != "wan22"
    if single_list:  # brought back in reverse order for the backward pass (recomputation or saved tensors)
        assert backward == sorted(backward, reverse=True) and set(backward) == set(range(len(swap.blocks)))
    with torch.no_grad():  # a no-grad pass (reference, loser sampling) runs the same blocks again
        torch.testing.assert_close(model.predict(*inputs), want_out, rtol=0, atol=0)
    assert all(not p.isnan().any() for i in swap.resident for p, _ in swap.stored[i])


def test_block_swap_keeps_adapters_and_unswapped_weights_on_the_device():
    model, _ = lora_model("wan")
    swap = enable_block_swap(model.unet, 1, "cpu")
    moved = {id(p) for p, _ in swap.stored[0]}
    block = swap.blocks[0]
    assert moved == {id(p) for n, p in block.named_parameters() if "lora_" not in n} and moved
    moves = []
    real_to = torch.Tensor.to
    with pytest.MonkeyPatch.context() as mp:  # which tensors go to the "device"
        mp.setattr(torch.Tensor, "to", lambda t, *a, **k: moves.append(t.data_ptr()) or real_to(t, *a, **k))
        model.unet.to("cpu")  # as the trainer and accelerate's prepare move the model
    for name, p in model.unet.named_parameters():
        assert (p.data_ptr() in moves) == (id(p) not in moved), name


@pytest.mark.parametrize(
    "distributed, key",
    [("FSDP", "model.fp8_base"), ("DEEPSPEED", "model.blocks_to_swap"), ("MULTI_GPU", "model.blocks_to_swap")],
)
def test_refused_in_one_line_where_it_cannot_work(distributed, key):
    model = build_model(ModelConfig(family="wan", lora_rank=4))
    cfg = ModelConfig(family="wan", lora_rank=4, **{key[6:]: 1 if "blocks" in key else True})
    with pytest.raises(ConfigError, match=key) as e:
        model.enable_low_memory(cfg, "cpu", distributed)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="model.fp8_base"):
        ModelConfig(family="wan", fp8_base=True)  # full fine-tuning: nothing frozen
    with pytest.raises(ConfigError, match="model.blocks_to_swap"):
        ModelConfig(family="wan", blocks_to_swap=1)  # full fine-tuning: the optimizer updates the weights in place
    with pytest.raises(ValueError, match="at most 2"):
        build_model(ModelConfig(family="wan", lora_rank=4, blocks_to_swap=3)).enable_low_memory(
            ModelConfig(family="wan", lora_rank=4, blocks_to_swap=3), "cpu"
        )


# -- training -------------------------------------------------------------------------------------------------

LOW = {"model.fp8_base": True, "model.blocks_to_swap": 1, "model.gradient_checkpointing": True}


@pytest.mark.parametrize("family", ["wan", "cogvideox", "ltx", "wan22"])
def test_fp8_block_swap_trains_and_resumes_exactly(tiny_config, tmp_path, family):
    common = {**TRAIN.get(family, TRAIN["wan"]), **LOW, "train.checkpoint_every": 2}
    if family == "wan22":
        common = {**common, "model.family": "wan22", "data.frames": 5}
    straight, resumed = straight_and_resumed(tiny_config, tmp_path, 3, **common)
    assert straight.model.block_swap is not None
    a, b = unet_state(straight), unet_state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    m_a, m_b = (
        [json.loads(line) for line in (t.out / "metrics.jsonl").read_text().splitlines()] for t in (straight, resumed)
    )
    assert [m["loss"] for m in m_a] == [m["loss"] for m in m_b]
    assert any(p.dtype == FP8 for p in straight.model.unet.parameters())
    assert any("lora_B.default" in k and a[k].abs().sum() > 0 for k in a)  # the adapter learned (B starts at 0)


def test_fp8_exports_in_training_dtype_and_load_in_the_pipeline(tiny_config):
    """Merged: the de-quantized base + the adapter in float32 (never float8), a folder `WanPipeline` loads, whose
    transformer predicts what the trainer's float8 model does; adapter: float32 LoRA files our loader reads."""
    for export in ("merged", "adapter"):
        cfg = tiny_config(
            **{
                **TRAIN["wan"],
                **LOW,
                "train.export": export,
                "train.max_steps": 1,
                "train.output_dir": str(tiny_config().train.output_dir) + export,
            }
        )
        trainer = Trainer(cfg)
        folder = f"{trainer.fit()['checkpoint']}/model"
        c, f, h, w = trainer.model.latent_shape(5, 32, 32)
        x, t = torch.randn(1, c, f, h, w), torch.tensor([700])
        cond = trainer.model.encode_prompt(["a red square moving left"])
        with torch.no_grad():
            want = trainer.model.predict(x, t, cond)
        if export == "merged":
            pipe = WanPipeline.from_pretrained(folder)
            assert {p.dtype for p in pipe.transformer.parameters()} == {torch.float32}
            view = copy.copy(trainer.model)
            view.unet, view.block_swap = pipe.transformer, None
            with torch.no_grad():
                torch.testing.assert_close(view.predict(x, t, cond), want, rtol=1e-4, atol=1e-5)
        else:
            loaded = load_model(folder)
            lora = {p.dtype for n, p in loaded.unet.named_parameters() if "lora_" in n}
            assert lora == {torch.float32}


def test_fp8_block_swap_two_processes_equal_one(synth_data, tmp_path):
    """DDP (2 gloo processes x batch 1) with float8 weights (not broadcast: every process builds the same) and a
    swapped block == 1 process x batch 2, step by step."""
    from test_trainer import assert_two_processes_equal_one

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
        "--model.fp8_base",
        "true",
        "--model.blocks_to_swap",
        "1",
        "--model.gradient_checkpointing",
        "true",
    )
