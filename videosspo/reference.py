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
from contextlib import contextmanager

import torch
from peft import LoraConfig
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

from videosspo.replay import ReplayPool

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
POLICY, REFERENCE = "default", "ref"


def add_lora(unet, rank: int, alpha: float | None) -> None:
    """Trainable LoRA on every attention projection (spatial, cross and motion attention).

    lora_B starts at zero, so the adapted network equals the base: theta_0 is the base model.
    """
    config = LoraConfig(r=rank, lora_alpha=alpha or rank, target_modules=LORA_TARGETS, init_lora_weights=True)
    unet.add_adapter(config, adapter_name=POLICY)
    unet.add_adapter(config, adapter_name=REFERENCE)
    unet.set_adapter(POLICY)  # peft: the active adapter is the trainable one


def is_lora(unet) -> bool:
    return any(isinstance(m, BaseTunerLayer) for m in unet.modules())


class Policy:
    """The trainable denoiser of `model` (unwrapped), its snapshots and its reference passes."""

    def __init__(self, model):
        self.model = model
        self.lora = is_lora(model.unet)
        self._ref_unet = None        # full fine-tuning only
        self._ref_loaded = None      # (pool identity, snapshot step) currently in the reference slot

    def snapshot(self) -> dict[str, torch.Tensor]:
        """The trainable weights now, detached on CPU."""
        if self.lora:
            state = get_peft_model_state_dict(self.model.unet, adapter_name=POLICY)
        else:
            state = self.model.unet.state_dict()
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
            unet.set_adapter(REFERENCE)
            try:
                yield self.model
            finally:
                unet.set_adapter(POLICY)  # also restores requires_grad on the policy adapter
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
        """A plain diffusers UNet with the policy's LoRA merged in (a copy), for saving and sampling."""
        if not self.lora:
            return self.model.unet
        unet = copy.deepcopy(self.model.unet)
        unet.delete_adapters(REFERENCE)
        unet.fuse_lora(adapter_names=[POLICY])
        unet.unload_lora()
        return unet
