"""LoRA on a family's denoiser: two adapter slots of one network, the policy (trained) and the reference.

The reference pass of `videosspo/reference.py` loads a past policy snapshot into the second slot and
activates it, so the base weights are shared and there is never a second copy of the network.
"""

from __future__ import annotations

import warnings

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.tuners_utils import BaseTunerLayer

POLICY, REFERENCE = "default", "ref"


def lora_config(rank: int, alpha: float | None, targets: list[str] | str) -> LoraConfig:
    """`targets`: peft's `target_modules`, module-name suffixes or one regular expression over the full names."""
    return LoraConfig(r=rank, lora_alpha=alpha or rank, target_modules=targets, init_lora_weights=True)


def add_lora(unet, rank: int, alpha: float | None, targets, seed: int = 0) -> None:
    """Trainable LoRA on the modules whose names end in `targets` (the model's `lora_scope`, its family's
    `lora_targets`: every attention projection, spatial, cross and motion; DiTs also their feed-forward
    layers; a two-expert Wan 2.2 only in the trained experts, as a regular expression).

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
