"""Reference models drawn from the replay pool, without a second copy of the network for LoRA.

`Policy` owns the trainable denoiser and knows how to snapshot it and how to run a past snapshot
as the reference:

- LoRA: the snapshot is the adapter's weights (MBs). The reference pass loads it into a second
  adapter slot, `ref`, of the same network and activates it; the base weights are shared.
- Full fine-tuning: the snapshot is the whole state dict on CPU (the pool spills to disk past its
  budget); one reference network is kept and reloaded only when the drawn index changes.

Under FSDP the network's parameters are sharded: the unwrapped module holds each process's flat
shard, not the weights. Every read (snapshot, export) then gathers the whole state dict on every
process (torch's `get_model_state_dict` with `full_state_dict`: a collective), every write (the
reference adapter, a resumed checkpoint) goes through `set_model_state_dict`, which keeps each
process's shard, and reference passes run through the FSDP module. The optimizer state is gathered
and scattered the same way (`optimizer_state`, `load_optimizer_state`), so a checkpoint holds whole
tensors whatever the sharding.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils import set_peft_model_state_dict
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import FullyShardedDataParallel
from torch.distributed.tensor import DTensor

from models.lora import POLICY, REFERENCE, set_adapter
from videosspo.replay import ReplayPool

FSDP_UNIT = "_fsdp_wrapped_module."  # in module names inside a nested FSDP unit, absent from its state dict


def is_lora(unet) -> bool:
    return any(isinstance(m, BaseTunerLayer) for m in unet.modules())


def is_sharded(module) -> bool:
    """True when `module`'s parameters are split across processes: FSDP (1: a wrapper; 2: DTensor parameters)."""
    return isinstance(module, FullyShardedDataParallel) or any(isinstance(p, DTensor) for p in module.parameters())


def with_adapter_name(adapter: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """peft's adapter keys (`x.lora_A.weight`) as the network's own (`x.lora_A.<name>.weight`)."""
    return {
        k.replace(".lora_A.", f".lora_A.{name}.").replace(".lora_B.", f".lora_B.{name}."): v for k, v in adapter.items()
    }


def adapter_of(state: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """Adapter `name` of a LoRA network's state dict, in peft's keys (the inverse of `with_adapter_name`)."""
    return {
        k.replace(f".{name}.", "."): v for k, v in state.items() if f".lora_A.{name}." in k or f".lora_B.{name}." in k
    }


def merge_lora(unet, state: dict[str, torch.Tensor], adapter: str = POLICY) -> dict[str, torch.Tensor]:
    """The plain state dict of LoRA network `unet` from its whole `state`: W = W_0 + (alpha / r) B A for each
    adapted projection (all are Linear: the families' `lora_targets`), every adapter dropped."""
    merged = {}
    for name, module in unet.named_modules():
        if isinstance(module, BaseTunerLayer):
            name = name.replace(FSDP_UNIT, "")  # nested FSDP units: the state's names are the module's own
            a, b = state[f"{name}.lora_A.{adapter}.weight"], state[f"{name}.lora_B.{adapter}.weight"]
            merged[f"{name}.weight"] = (
                state[f"{name}.base_layer.weight"] + (b.float() @ a.float()) * module.scaling[adapter]
            )
    plain = {}
    for key, value in state.items():
        if "lora_" in key:
            continue
        key = key.replace(".base_layer.", ".")
        plain[key] = merged.get(key, value)
    return plain


class Policy:
    """The trainable denoiser of `model` (unwrapped), its snapshots and its reference passes.

    `wrapped` is the denoiser as accelerate prepared it (DDP, FSDP, ...; default: the unwrapped one).
    """

    def __init__(self, model, wrapped=None):
        self.model = model
        self.wrapped = model.unet if wrapped is None else wrapped
        self.sharded = is_sharded(self.wrapped)
        self.lora = is_lora(model.unet)
        self._ref_unet = None  # full fine-tuning only
        self._ref_loaded = None  # (pool identity, snapshot step) currently in the reference slot
        self._trainable = self._with_unet(self.wrapped)  # the model viewed through the wrapped denoiser

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The trainable forward, through the wrapped denoiser (DDP syncs its gradients, FSDP gathers its shards)."""
        return self._trainable.predict(x_t, t, cond)

    def state(self) -> dict[str, torch.Tensor]:
        """The denoiser's whole state dict (LoRA: base and adapters), gathered on every process when sharded
        (a collective: every process must call it)."""
        if self.sharded:
            return get_model_state_dict(self.wrapped, options=StateDictOptions(full_state_dict=True))
        return self.model.unet.state_dict()

    def snapshot(self, state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The trainable weights now (of `state`, default `self.state()`), detached on CPU."""
        state = self.state() if state is None else state
        if self.lora:
            state = adapter_of(state, POLICY)
        return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        """Write whole tensors (some or all of the state dict's keys) into the denoiser; sharded, each process keeps
        its shard (a collective)."""
        if self.sharded:
            loaded = set_model_state_dict(
                self.wrapped, state, options=StateDictOptions(full_state_dict=True, strict=False)
            )
        else:
            loaded = self.model.unet.load_state_dict(state, strict=False)
        if loaded.unexpected_keys:
            raise KeyError(f"not the denoiser's keys: {loaded.unexpected_keys[:3]}")

    def load_adapter(self, adapter: dict[str, torch.Tensor], name: str = POLICY) -> None:
        """Write a LoRA snapshot into adapter slot `name` (a collective when sharded)."""
        if self.sharded:
            self.load(with_adapter_name(adapter, name))
        else:
            set_peft_model_state_dict(self.model.unet, adapter, adapter_name=name)

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict:
        """`optimizer`'s state keyed by parameter name with whole tensors, for process 0 to write (sharded only: a
        collective). On accelerators it is gathered to process 0's CPU memory; on CPU it is not "offloaded": torch's
        FSDP1 offload of a CPU tensor is that same tensor, freed under the result (SIGSEGV, torch 2.13)."""
        offload = self.model.unet.device.type != "cpu"
        return get_optimizer_state_dict(
            self.wrapped, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=offload)
        )

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict) -> None:
        """Restore an `optimizer_state` (every process passes the whole; each keeps its shard's part)."""
        set_optimizer_state_dict(self.wrapped, optimizer, state, options=StateDictOptions(full_state_dict=True))

    @contextmanager
    def reference(self, pool: ReplayPool, index: int):
        """Yield the model with snapshot `index` of `pool` as its denoiser (for no-grad passes)."""
        key = (id(pool), pool.steps[index])
        if self.lora:
            unet = self.model.unet
            if self._ref_loaded != key:
                self.load_adapter(pool.get(index), REFERENCE)
                self._ref_loaded = key
            set_adapter(unet, REFERENCE)
            try:  # sharded: through FSDP, which gathers each unit's weights for its forward
                yield self._with_unet(self.wrapped) if self.sharded else self.model
            finally:
                set_adapter(unet, POLICY)  # also restores requires_grad on the policy adapter
            return
        if self._ref_unet is None:  # sharded: a whole (unsharded) copy, built from the snapshot
            self._ref_unet = (
                (self.plain() if self.sharded else copy.deepcopy(self.model.unet)).requires_grad_(False).eval()
            )
        if self._ref_loaded != key:
            self._ref_unet.load_state_dict(pool.get(index))
            self._ref_loaded = key
        yield self._with_unet(self._ref_unet)

    def _with_unet(self, unet):
        view = copy.copy(self.model)
        view.unet = unet
        return view

    def plain(self, state: dict[str, torch.Tensor] | None = None):
        """A new plain diffusers denoiser (no LoRA layers) holding `state`, a plain state dict (default: fresh)."""
        unet = self.model.unet
        plain = type(unet).from_config(unet.config)
        if state is not None:
            plain.load_state_dict(state)
        return plain.to(unet.device)

    def merged_unet(self, state: dict[str, torch.Tensor] | None = None):
        """The policy as a plain diffusers UNet, for saving and sampling: LoRA merged in (`merge_lora`), from
        `state` (default `self.state()`, gathered when sharded). Unsharded full fine-tuning: the network itself."""
        if not (self.lora or self.sharded):
            return self.model.unet
        state = self.state() if state is None else state
        return self.plain(merge_lora(self.model.unet, state) if self.lora else state)
