"""Reference models drawn from the replay pool, without a second copy of the network for LoRA.

`Policy` owns the trainable denoiser and knows how to snapshot it and how to run a past snapshot
as the reference:

- LoRA: the snapshot is the adapter's weights (MBs). The reference pass loads it into a second
  adapter slot, `ref`, of the same network and activates it; the base weights are shared.
- Full fine-tuning: the snapshot is the whole state dict on CPU (the pool spills to disk past its
  budget); one reference network is kept and reloaded only when the drawn index changes.
"""

from __future__ import annotations

import copy
import warnings
from contextlib import contextmanager

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

from videosspo.replay import ReplayPool

POLICY, REFERENCE = "default", "ref"


def lora_config(rank: int, alpha: float | None, targets) -> LoraConfig:
    return LoraConfig(r=rank, lora_alpha=alpha or rank, target_modules=list(targets), init_lora_weights=True)


def add_lora(unet, rank: int, alpha: float | None, targets, seed: int = 0) -> None:
    """Trainable LoRA on the modules whose names end in `targets` (the family's `lora_targets`:
    every attention projection, spatial, cross and motion; DiTs also their feed-forward layers).

    Uses peft directly (diffusers' adapter mixin is missing on some UNets, e.g. UNet3DConditionModel).
    lora_B starts at zero, so the adapted network equals the base: theta_0 is the base model.
    lora_A is drawn from `seed` (peft draws it from the global RNG), so identical runs are identical.
    """
    config = lora_config(rank, alpha, targets)
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")  # the second adapter: intended
        torch.manual_seed(seed)
        for name in (POLICY, REFERENCE):
            inject_adapter_in_model(config, unet, adapter_name=name)
    set_adapter(unet, POLICY)


def set_adapter(unet, name: str) -> None:
    """Activate adapter `name` in every LoRA layer; peft makes the active adapter the trainable one."""
    for module in unet.modules():
        if isinstance(module, BaseTunerLayer):
            module.set_adapter(name)


def is_lora(unet) -> bool:
    return any(isinstance(m, BaseTunerLayer) for m in unet.modules())


class Policy:
    """The trainable denoiser of `model` (unwrapped), its snapshots and its reference passes."""

    def __init__(self, model, full_state_dict=None):
        """`full_state_dict()` gathers the whole state dict under sharding (accelerate's
        `get_state_dict` for FSDP / ZeRO-3); by default the unwrapped UNet's own."""
        self.model = model
        self.full_state_dict = full_state_dict or (lambda: model.unet.state_dict())
        self.lora = is_lora(model.unet)
        self._ref_unet = None        # full fine-tuning only
        self._ref_loaded = None      # (pool identity, snapshot step) currently in the reference slot

    def snapshot(self) -> dict[str, torch.Tensor]:
        """The trainable weights now, detached on CPU."""
        if self.lora:
            state = get_peft_model_state_dict(self.model.unet, adapter_name=POLICY)
        else:
            state = self.full_state_dict()
        return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}

    @contextmanager
    def reference(self, pool: ReplayPool, index: int):
        """Yield the model with snapshot `index` of `pool` as its denoiser (for no-grad passes)."""
        key = (id(pool), pool.steps[index])
        if self.lora:
            unet = self.model.unet
            if self._ref_loaded != key:
                set_peft_model_state_dict(unet, pool.get(index), adapter_name=REFERENCE)
                self._ref_loaded = key
            set_adapter(unet, REFERENCE)
            try:
                yield self.model
            finally:
                set_adapter(unet, POLICY)  # also restores requires_grad on the policy adapter
            return
        if self._ref_unet is None:
            self._ref_unet = copy.deepcopy(self.model.unet).requires_grad_(False).eval()
        if self._ref_loaded != key:
            self._ref_unet.load_state_dict(pool.get(index))
            self._ref_loaded = key
        yield self._with_unet(self._ref_unet)

    def _with_unet(self, unet):
        view = copy.copy(self.model)
        view.unet = unet
        return view

    def merged_unet(self):
        """A plain diffusers UNet with the policy's LoRA merged in (a new module), for saving and sampling.

        W = W_0 + (alpha / r) B A for each adapted projection; the adapters themselves are dropped.
        """
        unet = self.model.unet
        if not self.lora:
            return unet
        merged = {}
        for name, module in unet.named_modules():
            if isinstance(module, BaseTunerLayer):
                base = module.get_base_layer()
                merged[f"{name}.weight"] = base.weight.detach() + module.get_delta_weight(POLICY).detach()
        state = {}
        for key, value in unet.state_dict().items():
            if "lora_" in key:
                continue
            key = key.replace(".base_layer.", ".")
            state[key] = merged.get(key, value)
        plain = type(unet).from_config(unet.config)
        plain.load_state_dict(state)
        return plain.to(unet.device)
