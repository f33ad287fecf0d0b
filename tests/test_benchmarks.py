"""benchmarks/bench_train.py in --quick mode with the smallest shapes at configs/animatediff_sspo.yaml's
settings: every section present, finite positive numbers, the counted UNet work of each method and
loser option, the concatenated forward equal to two separate ones, and the LoRA reference cheaper
than a full fine-tuning reference copy."""

from __future__ import annotations

import json
import math

import pytest

SECTIONS = ("train_step", "summary", "loser_options", "concat_forward", "reference_memory", "loser_cost", "sampling")


def _numbers(node, path=""):
    if isinstance(node, bool):
        return
    if isinstance(node, (int, float)):
        yield path, node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _numbers(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _numbers(v, f"{path}[{i}]")


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory):
    from benchmarks.bench_train import main

    out = tmp_path_factory.mktemp("bench") / "bench.json"
    result = main(
        [
            "--quick",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--frames",
            "2",
            "--batch",
            "1",
            "--repeat",
            "1",
            "--warmup",
            "1",
            "--loser-steps",
            "2",
            "4",
            "--sample-steps",
            "2",
            "--lora-rank",
            "4",
            "--loser-options",
            "ddim_20",
            "unipc_4",
            "reuse_4",
            "winner_0.5",
            "overlap",
            "--sections",
            *(s for s in SECTIONS if s != "summary"),
        ]
    )  # not memory: 5 fresh processes
    return result, json.loads(out.read_text())


def test_json_has_every_section_with_finite_positive_numbers(quick_result):
    result, saved = quick_result
    assert saved["settings"] == json.loads(json.dumps(result["settings"]))
    for key in ("torch", "device", "torch_threads"):
        assert saved["env"][key], key
    for section in SECTIONS:
        assert saved[section], f"section {section} is empty"
    for path, value in _numbers({k: saved[k] for k in SECTIONS}):
        assert math.isfinite(value), f"{path} = {value}"
        if not any(word in path for word in ("diff", "mem", "rows")):  # differences, RSS deltas, unused phases may be 0
            assert value > 0, f"{path} = {value}"
        else:
            assert value >= 0, f"{path} = {value}"

    rows = {(r["method"], r["mode"]) for r in saved["train_step"]}
    assert rows == {(m, mode) for m in ("sft", "dpo", "sspo") for mode in ("lora4", "full")}
    assert all("losers_s" in r for r in saved["train_step"] if r["method"] == "sspo")
    losers = saved["loser_cost"][0]
    assert [r["loser_steps"] for r in losers["by_steps"]] == [2, 4]
    assert [r["option"] for r in saved["loser_options"]] == ["ddim_20", "unipc_4", "reuse_4", "winner_0.5", "overlap"]
    assert {r["scheduler"] for r in saved["sampling"]} >= {"ddim", "ddpm", "euler", "dpm++"}


def test_counted_unet_work_follows_the_config(quick_result):
    """configs/animatediff_sspo.yaml: batch 1, 6 UniPC loser steps with CFG (2 rows a step), reused for 3 steps;
    each loser option trains a batch once unless it sets reuse."""
    _, saved = quick_result
    work = {
        (r["method"], r["mode"]): (r["policy_rows_per_step"], r["reference_rows_per_step"], r["loser_rows_per_step"])
        for r in saved["train_step"]
    }
    for mode in ("lora4", "full"):
        assert work["sft", mode] == (1, 0, 0) and work["dpo", mode] == (2, 2, 0) and work["sspo", mode] == (2, 2, 4)
    options = {r["option"]: r["loser_rows_per_step"] for r in saved["loser_options"]}
    assert options == {"ddim_20": 40, "unipc_4": 8, "reuse_4": 3, "winner_0.5": 6, "overlap": 12}  # 20x2; 4x2; 6x2/4;
    for row in saved["summary"]:  # 3x2; 6x2
        assert row["sspo_unet_rows_per_step"] == 8 and row["loser_share"] < 1
        # forward equivalents: sft 3 x 1; dpo 3 x 2 + 2; sspo 3 x 2 + 2 + 6 x 2 / 3: issue 10's target, SSPO/SFT <= 4
        assert (row["dpo_over_sft_counted"], row["sspo_over_sft_counted"]) == pytest.approx((8 / 3, 12 / 3))


def test_concatenated_forward_equals_separate_forwards(quick_result):
    _, saved = quick_result
    for row in saved["concat_forward"]:
        assert row["max_abs_diff_error"] < 1e-4, row
        assert row["max_abs_diff_output"] < 1e-4, row


def test_lora_reference_holds_fewer_bytes_than_a_full_copy(quick_result):
    _, saved = quick_result
    by_mode = {r["mode"]: r for r in saved["reference_memory"]}
    lora, full = by_mode["lora4"], by_mode["full"]
    assert lora["total_extra_bytes"] < full["total_extra_bytes"]
    assert lora["reference_extra_bytes"] < full["reference_extra_bytes"]
    # full fine-tuning: the reference copy is a whole UNet (parameters and buffers)
    assert full["reference_extra_bytes"] == pytest.approx(full["policy_unet_mb"] * 2**20)


def test_dit_rows_at_the_wan_config(tmp_path):
    """configs/wan_sspo.yaml measured as is: frames rounded up to 4k+1, the config's 20-step UniPC loser with CFG
    (40 rows), the loser options whose sampler applies to a flow model, and the flow objective in the concatenated
    forward."""
    from benchmarks.bench_train import Settings, families_for, frames_for, main

    assert [frames_for(f, Settings(frames=2)) for f in ("sd", "animatediff", "wan", "cogvideox")] == [1, 2, 5, 9]
    wan_config = Settings(config="configs/wan_sspo.yaml")
    assert "wan" in families_for(["all"], wan_config) and "cogvideox" not in families_for(["all"], wan_config)
    saved = main(
        [
            "--quick",
            "--config",
            "configs/wan_sspo.yaml",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "b.json"),
            "--frames",
            "2",
            "--batch",
            "1",
            "--repeat",
            "1",
            "--warmup",
            "0",
            "--lora-rank",
            "4",
            "--loser-options",
            "dpm++_8",
            "unipc_4",
            "--sections",
            "train_step",
            "loser_options",
            "concat_forward",
        ]
    )
    assert saved["families"] == ["wan"]
    work = {
        (r["method"], r["mode"]): (r["policy_rows_per_step"], r["reference_rows_per_step"], r["loser_rows_per_step"])
        for r in saved["train_step"]
    }
    assert work == {
        (m, mode): rows
        for mode in ("lora4", "full")
        for m, rows in (("sft", (1, 0, 0)), ("dpo", (2, 2, 0)), ("sspo", (2, 2, 40)))
    }
    assert [(r["option"], r["loser_rows_per_step"]) for r in saved["loser_options"]] == [("unipc_4", 8)]  # no dpm++
    assert saved["concat_forward"][0]["latent_shape"] == [4, 2, 2, 2]  # 5 frames -> 2 latent frames, 16 px / 8
    assert saved["concat_forward"][0]["max_abs_diff_error"] < 1e-5


def test_loser_fidelity_measures_each_sampler_against_the_exact_sample():
    """benchmarks/loser_fidelity.py at configs/animatediff_sspo.yaml's schedule and CFG, its loser set to DDIM 20:
    the error is ‖x − x*‖ / ‖x*‖ (by hand), DDIM at the reference's steps has error 0, and UniPC converges to
    the same sample as DDIM: its error falls with its steps, below DDIM's at equal steps."""
    import dataclasses

    import torch

    from benchmarks.loser_fidelity import build, measure, relative_error
    from videosspo.config import load_config

    x, exact = torch.tensor([[3.0, 4.0], [1.0, 1.0]]), torch.tensor([[0.0, 4.0], [1.0, 1.0]])
    assert relative_error(x, exact).tolist() == [0.75, 0.0]

    config = load_config("configs/animatediff_sspo.yaml")
    config = dataclasses.replace(config, loser=dataclasses.replace(config.loser, scheduler="ddim", steps=20, reuse=1))
    torch.manual_seed(0)
    result = measure(
        build(config, "tiny"),
        config,
        ["a red square moving left", "waves"],
        [0, 1],
        frames=2,
        height=16,
        width=16,
        steps=(2, 8, 40),
        ref_steps=40,
    )
    rows = {(r["scheduler"], r["steps"]): r for r in result["rows"]}
    assert result["ref"] == "ddim 40" and result["rows"][0]["loser"] == "ddim 20 (config)"
    assert rows["ddim", 40]["error"] == 0 and rows["ddim", 20]["unet_rows"] == 40  # 20 steps x 2 CFG rows
    assert rows["unipc", 8]["error"] < rows["unipc", 2]["error"] / 2
    assert rows["unipc", 8]["error"] < rows["ddim", 8]["error"] / 2
    assert rows["unipc", 8]["error_vs_config"] == pytest.approx(rows["unipc", 8]["error"] / rows["ddim", 20]["error"])
