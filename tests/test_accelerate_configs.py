"""The shipped accelerate configs (configs/accelerate/) parse and validate as `accelerate launch` reads them."""

from __future__ import annotations

import pytest
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from conftest import ROOT

# file -> (processes, machines, which distributed flag accelerate sets)
EXPECTED = {
    "ddp_8gpu.yaml": (8, 1, "multi_gpu"),
    "ddp_2node.yaml": (16, 2, "multi_gpu"),
    "deepspeed_zero2_8gpu.yaml": (8, 1, "use_deepspeed"),
    "fsdp_8gpu.yaml": (8, 1, "use_fsdp"),
}


def test_every_shipped_config_is_listed():
    assert sorted(p.name for p in (ROOT / "configs" / "accelerate").glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_accelerate_reads_the_config(name):
    path = ROOT / "configs" / "accelerate" / name
    args = launch_command_parser().parse_args(["--config_file", str(path), "-m", "videosspo.train"])
    args, _, _ = _validate_launch_command(args)
    processes, machines, flag = EXPECTED[name]
    assert (args.num_processes, args.num_machines) == (processes, machines)
    flags = {f: bool(getattr(args, f)) for f in ("multi_gpu", "use_deepspeed", "use_fsdp")}
    assert flags == {f: f == flag for f in flags}
    assert args.mixed_precision == "no"  # precision is the run config's train.mixed_precision
    if flag == "use_deepspeed":
        assert int(args.zero_stage) == 2
    if flag == "use_fsdp":
        assert args.fsdp_sharding_strategy == "FULL_SHARD" and args.fsdp_state_dict_type == "FULL_STATE_DICT"


def test_deepspeed_takes_the_run_configs_micro_batch_and_clipping_and_refuses_zero3():
    from accelerate.utils import DeepSpeedPlugin

    from videosspo.backend import _check_deepspeed
    from videosspo.config import ConfigError

    plugin = DeepSpeedPlugin(zero_stage=2)  # as the shipped config: batch sizes and clipping "auto"
    _check_deepspeed(plugin, batch_size=3, max_grad_norm=0.5)
    config = plugin.deepspeed_config
    assert (config["train_micro_batch_size_per_gpu"], config["gradient_clipping"]) == (3, 0.5)  # not accelerate's 1.0
    with pytest.raises(ConfigError, match="ZeRO-3 partitions the parameters"):
        _check_deepspeed(DeepSpeedPlugin(zero_stage=3), batch_size=1, max_grad_norm=1.0)


def test_deepspeed_without_an_accelerator_names_gloo(monkeypatch):
    """accelerate finds no process-group backend for DeepSpeed on a CPU (it then counts 1 process of 2)."""
    import torch

    from videosspo.backend import _process_group

    monkeypatch.setattr(torch.accelerator, "is_available", lambda: False)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    assert [handler.backend for handler in _process_group()] == ["gloo"]
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)
    assert _process_group() == []
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: False)
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED")
    assert _process_group() == []


def test_deepspeed_checkpoints_resume_under_deepspeed_on_their_process_count_only(tmp_path):
    """ZeRO's optimizer state is a file per process, partitioned over them: DeepSpeed reads no other count and
    nothing from a checkpoint written without it; each mix is refused in one line naming the fix."""
    from videosspo.backend import check_zero_partitions
    from videosspo.config import ConfigError

    plain, zero2 = tmp_path / "plain" / "accelerate", tmp_path / "zero2" / "accelerate"
    (zero2 / "pytorch_model").mkdir(parents=True)
    plain.mkdir(parents=True)
    for rank in (0, 1):
        (zero2 / "pytorch_model" / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt").touch()
    check_zero_partitions(zero2, deepspeed=True, processes=2)
    check_zero_partitions(plain, deepspeed=False, processes=2)
    fix = "resume under DeepSpeed with 2 processes .*--num_processes 2\\)$"
    with pytest.raises(ConfigError, match=f"cannot resume on 1 DeepSpeed processes: .* over its 2 processes; {fix}"):
        check_zero_partitions(zero2, deepspeed=True, processes=1)
    with pytest.raises(ConfigError, match=f"cannot resume without DeepSpeed: .* over its 2 processes; {fix}"):
        check_zero_partitions(zero2, deepspeed=False, processes=2)
    with pytest.raises(
        ConfigError,
        match="cannot resume under DeepSpeed: .*plain was written without it .*; resume "
        "with the accelerate config that wrote it$",
    ):
        check_zero_partitions(plain, deepspeed=True, processes=2)
