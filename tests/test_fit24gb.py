"""What takes a 14B SSPO step to one 24 GB card besides fp8 and block swap: the text encoder left on the CPU when text
is cached (`videosspo.latents.encoders_on_cpu`), and checkpointed block inputs held in CPU memory
(`model.offload_checkpoints`, `models.offload.CheckpointOffload`)."""

from __future__ import annotations

import json

import pytest
import torch
from accelerate import Accelerator
from test_dit import WAN
from test_lowmem import NAN, forward_backward, lora_model
from test_trainer import unet_state

import models.offload
from models.fp8 import enable_fp8_storage
from models.offload import CheckpointOffload, block_lists, enable_block_swap
from videosspo.config import ConfigError, ModelConfig
from videosspo.latents import cache_latents
from videosspo.report import write_samples
from videosspo.trainer import Trainer

MARK = torch.device("cpu", 0)  # "the accelerator": a CPU device torch tells apart from "cpu" in a `.to` call


class MarkedAccelerator(Accelerator):
    """An accelerator whose device is `MARK`: what the trainer sends to the device is seen in `Module.to`'s calls."""

    @property
    def device(self):
        return MARK


def placements(monkeypatch) -> list[tuple[str, object]]:
    """(module class, device) of every `Module.to(device)` from now on."""
    calls = []
    real = torch.nn.Module.to

    def to(module, *args, **kwargs):
        device = kwargs.get("device", args[0] if args and not isinstance(args[0], torch.dtype) else None)
        if device is not None:
            calls.append((type(module).__name__, torch.device(device)))
        return real(module, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", to)
    return calls


def test_cached_text_keeps_the_text_encoder_off_the_accelerator_and_trains_bit_for_bit(
    tiny_config, tmp_path, monkeypatch
):
    """With `data.latent_cache` the UMT5 encoder is never sent to the accelerator (the denoiser and VAE are); the
    prompts still encoded (the dropped caption "", the negative prompt, sample prompts) run on the CPU once per run
    and land on the accelerator; the run equals the same cached run with the encoder on the accelerator, bit for bit."""
    from videosspo.synth import make_dataset

    data = make_dataset(tmp_path / "clips", n=2, frames=5, height=16, width=16, progress=False)
    common = {
        **WAN,
        "data.path": str(data),
        "data.frames": 5,
        "data.height": 16,
        "data.width": 16,
        "train.max_steps": 2,
        "loser.guidance": 3.0,
        "data.caption_dropout": 0.5,
    }
    plain = Trainer(tiny_config(**common, **{"train.output_dir": str(tmp_path / "plain")}))
    cache = cache_latents(plain.model, plain.data, tmp_path / "cache", progress=False)
    cached = {**common, "data.latent_cache": str(cache)}

    calls = placements(monkeypatch)
    kept = Trainer(tiny_config(**cached, **{"train.output_dir": str(tmp_path / "kept")}), MarkedAccelerator())
    encoder = type(kept.model.text_encoder).__name__
    assert (encoder, MARK) not in calls and (type(kept.model.unet).__name__, MARK) in calls
    assert (type(kept.model.vae).__name__, MARK) in calls  # sample videos decode on the accelerator
    assert kept.model.device == MARK and all(p.device.type == "cpu" for p in kept.model.text_encoder.parameters())
    calls.clear()
    with pytest.MonkeyPatch.context() as mp:  # as before: everything moved
        mp.setattr("videosspo.trainer.encoders_on_cpu", lambda config: ())
        moved = Trainer(tiny_config(**cached, **{"train.output_dir": str(tmp_path / "moved")}), MarkedAccelerator())
    assert (encoder, MARK) in calls  # the marker sees a move when there is one

    kept.fit(), moved.fit()
    a, b = unet_state(kept), unet_state(moved)
    assert all(torch.equal(a[k], b[k]) for k in a)
    m_a, m_b = ([json.loads(line) for line in open(tmp_path / d / "metrics.jsonl")] for d in ("kept", "moved"))
    assert [m["loss"] for m in m_a] == [m["loss"] for m in m_b] and len(m_a) == 2
    assert "" in kept._fixed_prompts  # the dropped caption, encoded once (on the CPU)
    encoded = []
    real = kept.model.text_encoder.forward
    monkeypatch.setattr(kept.model.text_encoder, "forward", lambda *a, **k: encoded.append(1) or real(*a, **k))
    write_samples(kept), write_samples(kept)
    assert encoded == []  # sample prompts and the negative prompt too: once per run (fit's final samples did)


def test_without_a_cache_every_encoder_goes_to_the_accelerator(tiny_config, monkeypatch):
    calls = placements(monkeypatch)
    trainer = Trainer(tiny_config(**WAN, **{"train.max_steps": 1}), MarkedAccelerator())
    assert (type(trainer.model.text_encoder).__name__, MARK) in calls


# -- offloaded checkpoints ------------------------------------------------------------------------------------


def hosted(monkeypatch) -> list[torch.Tensor]:
    """The tensors `CheckpointOffload` copies to the host, recorded as it copies them."""
    copies = []
    real = models.offload.to_host
    monkeypatch.setattr(models.offload, "to_host", lambda t: copies.append(t) or real(t))
    return copies


@pytest.mark.parametrize(
    "family, fp8, swap",
    [
        ("wan", False, 0),
        ("wan", True, 2),
        ("wan22", True, 1),
        ("cogvideox", False, 1),
        ("ltx", True, 0),
        ("animatediff", False, 0),
    ],
)
def test_offloaded_checkpoints_give_the_same_outputs_and_gradients(family, fp8, swap, monkeypatch):
    """Checkpointed blocks' inputs copied to the host and back: every output and gradient equals the run that keeps
    them, with fp8 storage and block swap (swapped weights poisoned while away) too; each DiT block's hidden-state
    input is among the copies, the denoiser's own weights never are, and a tensor every block gets is copied once."""
    model, inputs = lora_model(family, checkpointing=True)
    if fp8:
        enable_fp8_storage(model.unet)
    want_out, want_grads = forward_backward(model, inputs)
    if swap:
        enable_block_swap(model.unet, swap, "cpu", absent=NAN)
    model.checkpoint_offload = CheckpointOffload(model.unet)
    copies = hosted(monkeypatch)
    out, grads = forward_backward(model, inputs)
    assert torch.equal(out, want_out)
    assert grads.keys() == want_grads.keys() and all(torch.equal(grads[k], want_grads[k]) for k in grads)
    weights = {p.data_ptr() for p in model.unet.parameters()}
    assert copies and not any(t.data_ptr() in weights for t in copies)
    assert len({id(t) for t in copies}) == len(copies)  # shared inputs (text, timestep, rotary) copied once
    if family != "animatediff":  # a DiT: each block's input, batch x tokens x width
        blocks = [b for seq in block_lists(model.unet) for b in seq]
        width = blocks[0].norm1.normalized_shape[0] if hasattr(blocks[0].norm1, "normalized_shape") else None
        hidden = [t for t in copies if t.ndim == 3 and (width is None or t.shape[-1] == width)]
        assert len(hidden) >= len(blocks)


def test_offload_checkpoints_wants_checkpointing_and_is_hooked_by_enable_low_memory():
    with pytest.raises(ConfigError, match="model.offload_checkpoints") as e:
        ModelConfig(family="wan", lora_rank=4, offload_checkpoints=True)
    assert "\n" not in str(e.value)
    cfg = ModelConfig(family="wan", lora_rank=4, gradient_checkpointing=True, offload_checkpoints=True)
    model, _ = lora_model("wan", checkpointing=True)
    model.enable_low_memory(cfg, "cpu")
    assert isinstance(model.checkpoint_offload, CheckpointOffload)


def test_offloaded_checkpoints_with_fp8_and_block_swap_train_and_resume_exactly(tiny_config, tmp_path):
    from test_trainer import straight_and_resumed

    low = {
        **WAN,
        "model.fp8_base": True,
        "model.blocks_to_swap": 1,
        "model.gradient_checkpointing": True,
        "train.checkpoint_every": 2,
    }
    plain = Trainer(tiny_config(**low, **{"train.max_steps": 3, "train.output_dir": str(tmp_path / "plain")}))
    plain.fit()
    straight, resumed = straight_and_resumed(
        tiny_config, tmp_path / "offload", 3, **low, **{"model.offload_checkpoints": True}
    )
    assert straight.model.checkpoint_offload is not None
    a, b, c = unet_state(straight), unet_state(resumed), unet_state(plain)
    assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]) for k in a)
