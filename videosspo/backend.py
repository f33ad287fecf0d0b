"""The distributed backend: accelerate set up for the trainer, and what DDP, FSDP and DeepSpeed each need.

accelerate is the only distributed layer. This room builds the `Accelerator` (gloo for DeepSpeed on CPU, DDP's
unused-parameter setting per family), checks DeepSpeed's settings, prepares the denoiser and optimizer, takes
the update step (clip, step unless non-finite), averages statistics and gathers objects over processes, and
writes and reads accelerate's part of a checkpoint: with LoRA the adapter only (the save/load hooks, DeepSpeed's
`exclude_frozen_parameters`), under FSDP the whole weights and optimizer state gathered by process 0
(`Backend.save_state`), a ZeRO checkpoint resumed only on its own process count (`check_zero_partitions`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.checkpointing import load_accelerator_state, save_accelerator_state
from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs, ProjectConfiguration, gather_object
from safetensors.torch import load_file, save_file

from models import FAMILIES
from videosspo.checkpoint import CheckpointError
from videosspo.config import Config, ConfigError
from videosspo.reference import Policy

ADAPTER_FILE = "lora_adapter.safetensors"  # LoRA runs: the policy adapter inside `accelerate/`
FSDP_MODEL_FILE = "fsdp_model.safetensors"  # FSDP, full fine-tuning: the whole weights inside `accelerate/`
FSDP_OPTIMIZER_FILE = "fsdp_optimizer.bin"  # FSDP: the whole optimizer state by parameter name, inside `accelerate/`
ZERO_PARTITIONS = (
    "pytorch_model/zero_pp_rank_*_optim_states.pt"  # DeepSpeed: ZeRO's optimizer state, a file per process
)


def make_accelerator(cfg: Config, out: Path) -> Accelerator:
    """The run's `Accelerator`: TensorBoard logs in `out/logs`, DDP told whether the family leaves parameters unused."""
    return Accelerator(
        gradient_accumulation_steps=cfg.optim.grad_accum,
        mixed_precision=cfg.train.mixed_precision,
        log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
        kwargs_handlers=[
            *_process_group(),
            DistributedDataParallelKwargs(find_unused_parameters=FAMILIES[cfg.model.family].unused_parameters),
        ],
    )


class Backend:
    """The denoiser and optimizer as accelerate prepared them, and the steps whose form depends on the backend.

    `prepare` returns the `Policy`: the unwrapped denoiser stays `model.unet`, the prepared one is `policy.wrapped`.
    """

    def __init__(self, accelerator: Accelerator, cfg: Config):
        self.accelerator, self.config = accelerator, cfg
        self.deepspeed = accelerator.state.deepspeed_plugin is not None
        if self.deepspeed:
            _check_deepspeed(accelerator.state.deepspeed_plugin, cfg.optim.batch_size, cfg.optim.max_grad_norm)

    def prepare(self, model, optimizer: torch.optim.Optimizer) -> tuple[Policy, torch.optim.Optimizer]:
        acc = self.accelerator
        wrapped, self.optimizer = acc.prepare(model.unet, optimizer)
        model.unet = acc.unwrap_model(wrapped)
        self.policy = Policy(model, wrapped=wrapped)
        if self.policy.lora:
            acc.register_save_state_pre_hook(self._save_adapter_only)
            acc.register_load_state_pre_hook(self._load_adapter_only)
        # DeepSpeed's engine writes its module past these hooks: with LoRA only the trainable adapter (the frozen base
        # would be GBs per checkpoint), read back non-strictly
        deepspeed_lora = self.policy.lora and self.deepspeed
        self._save_kwargs = {"exclude_frozen_parameters": True} if deepspeed_lora else {}
        self._load_kwargs = {"load_module_strict": False} if deepspeed_lora else {}
        return self.policy, self.optimizer

    def update(self) -> tuple[float | None, bool]:
        """Clip the synchronised gradient at optim.max_grad_norm (0: never) and step the optimizer unless the
        gradient is non-finite. Returns (its norm before clipping, whether the step was taken)."""
        acc = self.accelerator
        grad_norm = acc.clip_grad_norm_(self.policy.wrapped.parameters(), self.config.optim.max_grad_norm or math.inf)
        # DeepSpeed clips and skips overflows inside its engine (its norm a float, or None); fp16's scaler
        # skips inf steps
        if grad_norm is None or torch.isfinite(torch.as_tensor(grad_norm)) or acc.scaler is not None:
            self.optimizer.step()
            return grad_norm, True
        return grad_norm, False

    def mean(self, stats: dict[str, float]) -> dict[str, float]:
        """`stats` averaged over the processes: the global batch's statistics, not process 0's share."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return stats
        values = acc.reduce(torch.tensor(list(stats.values()), device=acc.device), reduction="mean")
        return dict(zip(stats, values.tolist(), strict=True))

    @staticmethod
    def gather(items: list) -> list:
        """Every process's `items`, concatenated in process order (a collective)."""
        return gather_object(items)

    def _save_adapter_only(self, models, weights, output_dir):
        """With LoRA a checkpoint's `accelerate/` holds the adapter (MBs), not the frozen base (GBs)."""
        weights.clear()
        adapter = self.policy.snapshot()  # every process: gathered from the shards under FSDP
        if self.accelerator.is_main_process:
            save_file(adapter, os.path.join(output_dir, ADAPTER_FILE))

    def _load_adapter_only(self, models, input_dir):
        models.clear()  # accelerate then restores optimizer, schedule and RNG; the adapter is ours
        self.policy.load_adapter(load_file(os.path.join(input_dir, ADAPTER_FILE)))

    def save_state(self, folder: Path) -> None:
        """accelerate's part of a checkpoint (every process calls it): weights (LoRA: the adapter), optimizer,
        grad scaler, RNG.

        Under FSDP the weights and the optimizer state are gathered whole and process 0 writes them
        (`FSDP_MODEL_FILE` or the adapter, `FSDP_OPTIMIZER_FILE`); `load_state` scatters them back, so a
        checkpoint does not depend on the sharding. accelerate's own FSDP save is not used: it offloads the
        gathered weights to CPU, which on a CPU device frees them under the state dict (SIGSEGV, torch 2.13).
        """
        acc = self.accelerator
        if not self.policy.sharded:
            acc.save_state(str(folder), **self._save_kwargs)  # LoRA: `_save_adapter_only` writes the adapter
            return
        weights, optimizer = (
            self.policy.snapshot(),
            self.policy.optimizer_state(self.optimizer.optimizer),
        )  # collectives
        folder.mkdir(parents=True, exist_ok=True)
        if acc.is_main_process:
            save_file(weights, str(folder / (ADAPTER_FILE if self.policy.lora else FSDP_MODEL_FILE)))
            torch.save(optimizer, folder / FSDP_OPTIMIZER_FILE)
        save_accelerator_state(str(folder), [], [], [], [], acc.process_index, acc.step, acc.scaler)  # RNG, scaler

    def load_state(self, folder: Path) -> None:
        """Restore what `save_state` wrote (every process reads the whole files; under FSDP each keeps its shard)."""
        acc = self.accelerator
        if not self.policy.sharded:
            acc.load_state(str(folder), **self._load_kwargs)
            return
        if not (folder / FSDP_OPTIMIZER_FILE).is_file():
            raise CheckpointError(
                f"it was not written under FSDP (no accelerate/{FSDP_OPTIMIZER_FILE}); resume it "
                f"with the accelerate config that wrote it"
            )
        weights = load_file(str(folder / (ADAPTER_FILE if self.policy.lora else FSDP_MODEL_FILE)))
        if self.policy.lora:
            self.policy.load_adapter(weights)
        else:
            self.policy.load(weights)
        self.policy.load_optimizer_state(
            self.optimizer.optimizer, torch.load(folder / FSDP_OPTIMIZER_FILE, weights_only=True)
        )
        acc.step = load_accelerator_state(str(folder), [], [], [], [], acc.process_index, acc.scaler).get(
            "step", acc.step
        )


def check_zero_partitions(folder: Path, deepspeed: bool, processes: int) -> None:
    """Resume refuses to mix DeepSpeed's checkpoints with others: ZeRO's optimizer state (`ZERO_PARTITIONS` in
    `folder`) is partitioned over the processes that wrote it. DeepSpeed loads neither another process count nor
    a checkpoint written without it, and its errors name no fix (every checkpoint then looks unresumable)."""
    partitions = len(list(folder.glob(ZERO_PARTITIONS)))
    if deepspeed and not partitions:
        raise ConfigError(
            f"cannot resume under DeepSpeed: {folder.parent} was written without it (no ZeRO optimizer "
            f"state); resume with the accelerate config that wrote it"
        )
    if partitions and (not deepspeed or partitions != processes):
        now = f"on {processes} DeepSpeed processes" if deepspeed else "without DeepSpeed"
        raise ConfigError(
            f"cannot resume {now}: the checkpoint's optimizer state is DeepSpeed ZeRO's, partitioned "
            f"over its {partitions} processes; resume under DeepSpeed with {partitions} processes "
            f"(accelerate launch --config_file configs/accelerate/deepspeed_zero2_8gpu.yaml "
            f"--num_processes {partitions})"
        )


def _check_deepspeed(plugin, batch_size: int, max_grad_norm: float) -> None:
    """DeepSpeed as the trainer uses it: ZeRO-3 is refused (its parameters are partitioned, and the replay
    snapshots, reference passes and export read whole ones; FSDP gathers them); the micro-batch is
    optim.batch_size (accelerate reads it from a prepared DataLoader, and the trainer prepares none); DeepSpeed's
    engine clips at optim.max_grad_norm (0: never), not at accelerate's 1.0 for `auto`."""
    if plugin.zero_stage == 3:
        raise ConfigError(
            "DeepSpeed ZeRO-3 partitions the parameters that the replay snapshots, reference passes "
            "and export read whole; use configs/accelerate/fsdp_8gpu.yaml (FSDP) or ZeRO-2"
        )
    plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = batch_size
    plugin.deepspeed_config["gradient_clipping"] = max_grad_norm


def _process_group() -> list[InitProcessGroupKwargs]:
    """DeepSpeed without an accelerator (DS_ACCELERATOR=cpu) needs gloo named: accelerate finds no backend for
    a CPU launched without --cpu and counts 1 process while DeepSpeed counts them all (its batch-size check fails)."""
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    return [InitProcessGroupKwargs(backend="gloo")] if deepspeed and not torch.accelerator.is_available() else []
