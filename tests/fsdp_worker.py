"""`python fsdp_worker.py --config CONFIG [--key value ...]` (`videosspo train`'s arguments; under torchrun for more than
one process): the run, with the denoiser wrapped by accelerate in FSDP (FULL_SHARD, one unit per attention block) on
CPU with gloo when there are several processes; one process runs unwrapped.

accelerate enables FSDP only on accelerators (its state switches to FSDP for GPU-like distributed types, and its
plugin asks for a device when `sync_module_states` is on), while torch's FSDP runs on CPU: the state is set to
FSDP by hand. benchmarks/fsdp_check.py names the arguments (`train_args`).
"""

import os
import sys

import torch
from accelerate import Accelerator
from accelerate.state import PartialState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

from videosspo.config import load_config
from videosspo.trainer import Trainer

argv = sys.argv[1:]
at = argv.index("--config")
cfg = load_config(argv[at + 1], argv[:at] + argv[at + 2 :])
processes = int(os.environ.get("WORLD_SIZE", "1"))
torch.set_num_threads(1)
if processes > 1:
    plugin = FullyShardedDataParallelPlugin(
        sync_module_states=False,
        use_orig_params=True,
        fsdp_version=1,
        state_dict_type="FULL_STATE_DICT",
        auto_wrap_policy="transformer_based_wrap",
        transformer_cls_names_to_wrap=["BasicTransformerBlock"],
    )
    accelerator = Accelerator(cpu=True, fsdp_plugin=plugin)
    for state in (PartialState(), accelerator.state):
        state.distributed_type, state.device, state.fsdp_plugin = DistributedType.FSDP, torch.device("cpu"), plugin
else:
    accelerator = Accelerator(cpu=True)
trainer = Trainer(cfg, accelerator=accelerator)
assert (type(trainer.policy.wrapped).__name__ == "FullyShardedDataParallel") == (processes > 1)
trainer.fit()
