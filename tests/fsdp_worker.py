"""`python fsdp_worker.py OUT DATA PROCESSES LORA_RANK [STEPS]` (under torchrun for 2): a tiny SSPO run with EMA
whose denoiser accelerate wraps in FSDP (FULL_SHARD, one unit per attention block) on CPU with gloo; one process
runs unwrapped. It trains to STEPS (default 3), resuming from OUT's latest checkpoint if there is one.

accelerate enables FSDP only on accelerators (its state switches to FSDP for GPU-like distributed types, and its
plugin asks for a device when `sync_module_states` is on), while torch's FSDP runs on CPU: the state is set to
FSDP by hand. Checkpoints are the trainer's own (accelerate's FSDP save would crash torch on CPU: Trainer._save_state).
"""

import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import PartialState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

from videosspo.config import load_config
from videosspo.trainer import Trainer

out, data, processes, rank = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
steps = int(sys.argv[5]) if len(sys.argv) > 5 else 3
torch.set_num_threads(1)
cfg = load_config(Path(__file__).parents[1] / "configs" / "tiny_animatediff_sspo.yaml", {
    "data": {"path": data, "frames": 2, "height": 16, "width": 16},
    "model": {"lora_rank": rank},
    "train": {"output_dir": out, "max_steps": steps, "checkpoint_every": 0, "sample_prompts": ["a"], "resume": "latest"},
    "sample": {"steps": 1}, "loser": {"steps": 2}, "replay": {"interval": 1, "size": 3},
    "optim": {"lr": 1e-3, "warmup_steps": 0, "batch_size": 2 // processes, "ema_decay": 0.9}, "method": {"beta": 50.0}})
if processes > 1:
    plugin = FullyShardedDataParallelPlugin(sync_module_states=False, use_orig_params=True, fsdp_version=1,
                                            state_dict_type="FULL_STATE_DICT", auto_wrap_policy="transformer_based_wrap",
                                            transformer_cls_names_to_wrap=["BasicTransformerBlock"])
    accelerator = Accelerator(cpu=True, fsdp_plugin=plugin)
    for state in (PartialState(), accelerator.state):
        state.distributed_type, state.device, state.fsdp_plugin = DistributedType.FSDP, torch.device("cpu"), plugin
else:
    accelerator = Accelerator(cpu=True)
trainer = Trainer(cfg, accelerator=accelerator)
assert (type(trainer.unet).__name__ == "FullyShardedDataParallel") == (processes > 1)
trainer.fit()
