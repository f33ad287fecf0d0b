"""The alignment world: the stacked-frames family through the adapter protocol, its word tokenizer,
the web/curated world, caption dropout, `videosspo pretrain-base` and the adherence scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import CLIPTokenizer

from models import build_model, load_checked_config, load_model
from videosspo import rng
from videosspo.config import Config, ConfigError, ModelConfig, load_config
from videosspo.resume import check_resume
from videosspo.synth import (
    COLORS,
    DIRECTIONS,
    HELDOUT,
    SHAPES,
    heldout_prompts,
    make_world,
    parse_caption,
    seen_prompts,
)

ROOT = Path(__file__).resolve().parents[1]
FRAMES, SIZE = 4, 16
PROMPTS = ["a red square moving left", "a blue circle moving up"]


@pytest.fixture(scope="module")
def stacked():
    return build_model(ModelConfig(family="stacked", vae="none", stacked_frames=FRAMES))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"), n_web=24, n_curated=6, frames=FRAMES, size=SIZE, progress=False)


def test_stacked_family_shape_contract_and_frame_mixing(stacked):
    x = torch.randn(2, *stacked.latent_shape(FRAMES, SIZE, SIZE), generator=torch.Generator().manual_seed(0))
    assert x.shape[1:] == (3, FRAMES, SIZE, SIZE) and stacked.unet.config.in_channels == 3 * FRAMES
    t, cond = torch.tensor([10, 900]), stacked.encode_prompt(PROMPTS)
    assert cond.shape == (2, 8, 32)
    with torch.no_grad():
        out = stacked.predict(x, t, cond)
        x2 = x.clone()
        x2[:, :, -1] += 1.0  # the last frame changes the first frame's output: frames are mixed
        out2 = stacked.predict(x2, t, cond)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert not torch.allclose(out[:, :, 0], out2[:, :, 0], atol=1e-6)
    with pytest.raises(ValueError, match=r"takes 4 frames of 3 channels, got 2 frames: set data.frames to 4"):
        stacked.predict(x[:, :, :2], t, cond)


def test_stacked_word_tokens_and_round_trip(stacked, tmp_path):
    tok = stacked.tokenizer
    for word in ("a", "moving", *COLORS, *SHAPES, *DIRECTIONS):
        assert len(tok(word).input_ids) == 3, word  # <start> word <end>
    ids = tok(PROMPTS, padding="max_length", max_length=8).input_ids
    assert [tok.decode(row, skip_special_tokens=True) for row in ids] == PROMPTS
    stacked.save_pretrained(tmp_path / "model")
    assert (
        CLIPTokenizer.from_pretrained(tmp_path / "model" / "tokenizer")(
            PROMPTS, padding="max_length", max_length=8
        ).input_ids
        == ids
    )
    loaded = load_model(tmp_path / "model")
    x = torch.randn(2, 3, FRAMES, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(
            stacked.predict(x, torch.tensor([5, 500]), stacked.encode_prompt(PROMPTS)),
            loaded.predict(x, torch.tensor([5, 500]), loaded.encode_prompt(PROMPTS)),
        )
    assert loaded.scheduler.config.beta_schedule == "squaredcos_cap_v2" and loaded.scheduler.config.clip_sample


def test_stacked_coordinates_reach_the_unet_and_survive_a_round_trip(tmp_path):
    """`model.stacked_coords`: the UNet sees the frames, then x and y from -1 to 1; a saved model keeps them."""
    model = build_model(ModelConfig(family="stacked", vae="none", stacked_frames=FRAMES, stacked_coords=True))
    assert (model.unet.config.in_channels, model.unet.config.out_channels) == (3 * FRAMES + 2, 3 * FRAMES)
    seen = []
    model.unet.conv_in.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    x, t = torch.randn(2, 3, FRAMES, 4, 3), torch.tensor([5, 500])
    with torch.no_grad():
        out = model.predict(x, t, model.encode_prompt(PROMPTS))
    (inp,) = seen
    assert torch.equal(inp[:, : 3 * FRAMES], x.permute(0, 2, 1, 3, 4).reshape(2, 3 * FRAMES, 4, 3))
    assert torch.equal(inp[1, -2], torch.tensor([[-1.0, 0.0, 1.0]] * 4))  # x: left to right
    assert torch.allclose(inp[1, -1, :, 0], torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0]))  # y: top to bottom
    model.save_pretrained(tmp_path / "model")
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path / "model").predict(x, t, model.encode_prompt(PROMPTS)), out)
    with pytest.raises(ConfigError, match=r"model.stacked_coords=true is not allowed with model.pretrained"):
        load_checked_config(
            overrides={"model": {"family": "stacked", "vae": "none", "pretrained": "base", "stacked_coords": True}}
        )
    plain, coords = (Config(model=ModelConfig(family="stacked", vae="none", stacked_coords=c)) for c in (False, True))
    with pytest.raises(ConfigError, match=r"cannot resume with model.stacked_coords=True"):
        check_resume(plain, coords)


def test_stacked_frames_must_match_data_frames():
    with pytest.raises(ConfigError, match=r"data.frames=4 .*model.stacked_frames \(8\)"):
        load_checked_config(overrides={"model": {"family": "stacked", "vae": "none"}, "data": {"frames": 4}})


def test_world_splits(world):
    web = [json.loads(line) for line in (world.web / "metadata.jsonl").read_text().splitlines()]
    curated = [json.loads(line) for line in (world.curated / "metadata.jsonl").read_text().splitlines()]
    wrong = [r for r in web if not r["caption_correct"]]
    assert 0 < len(wrong) < len(web)
    for row in web:  # a wrong caption differs from the clip in exactly its colour or its direction
        said, shown = parse_caption(row["caption"]), row["attributes"]
        diff = [k for k in ("color", "shape", "direction") if said[k] != shown[k]]
        assert diff == [] if row["caption_correct"] else diff in (["color"], ["direction"])
    for row in curated:  # correct clips, never a held-out combination, each with a wrong loser
        said = parse_caption(row["caption"])
        assert all(said[k] == row["attributes"][k] for k in said)
        assert (said["color"], said["direction"]) not in HELDOUT
        assert any(said[k] != row["loser_attributes"][k] for k in said)
    held = {(p["color"], p["direction"]) for p in map(parse_caption, heldout_prompts())}
    seen = {(p["color"], p["direction"]) for p in map(parse_caption, seen_prompts())}
    assert held == set(HELDOUT) and len(heldout_prompts()) == 24 and not held & seen


def test_caption_dropout_draws_are_per_sample_and_seeded():
    assert not rng.drop_captions(0.0, 0, 3, [0, 1, 2]).any()
    want = [torch.rand(1, generator=rng.generator(7, 3, i, "caption")).item() < 0.5 for i in range(40)]
    got = rng.drop_captions(0.5, 7, 3, list(range(40)))
    assert got.tolist() == want and 5 < sum(want) < 35
    # a sample's draw does not depend on the batch it lands in
    assert rng.drop_captions(0.5, 7, 3, [12, 30]).tolist() == [want[12], want[30]]


def test_caption_dropout_equals_training_on_empty_captions(world, tmp_path):
    """The loss with dropout equals the loss without it on the batch whose dropped captions are ''."""
    from videosspo.trainer import Trainer

    def trainer(p):
        return Trainer(
            load_config(
                overrides={
                    "model": {"family": "stacked", "vae": "none", "stacked_frames": FRAMES},
                    "data": {
                        "path": str(world.web),
                        "frames": FRAMES,
                        "height": SIZE,
                        "width": SIZE,
                        "caption_dropout": p,
                    },
                    "method": {"name": "sft"},
                    "train": {"output_dir": str(tmp_path / f"run{p}")},
                }
            )
        )

    positions = list(range(16))
    dropped = rng.drop_captions(0.5, 0, 0, positions)
    assert 0 < dropped.sum() < 16
    with_dropout, without = trainer(0.5), trainer(0.0)
    batch = {
        "pixels": torch.stack([with_dropout.data[i]["pixels"] for i in positions]),
        "positions": positions,
        "captions": [with_dropout.data[i]["caption"] for i in positions],
    }
    emptied = {**batch, "captions": ["" if d else c for c, d in zip(batch["captions"], dropped, strict=True)]}
    with torch.no_grad():
        loss_dropout = with_dropout.loss(batch)[0]
        assert torch.allclose(loss_dropout, without.loss(emptied)[0])
        assert not torch.allclose(loss_dropout, without.loss(batch)[0])


def test_pretrain_base_builds_a_loadable_base_through_the_trainer(tmp_path, capsys):
    from videosspo.cli import main

    main(
        [
            "pretrain-base",
            "--data.path",
            str(tmp_path / "world" / "web"),
            "--data.latent_cache",
            str(tmp_path / "world" / "web" / "cache"),
            "--data.frames",
            "2",
            "--data.synth_if_missing",
            "16",
            "--model.stacked_frames",
            "2",
            "--optim.batch_size",
            "2",
            "--train.max_steps",
            "2",
            "--train.output_dir",
            str(tmp_path / "base"),
            "--train.sample_prompts",
            "[a red square moving left]",
            "--sample.steps",
            "2",
        ]
    )
    assert (tmp_path / "world" / "curated" / "metadata.jsonl").is_file()  # the whole world, both splits
    assert json.loads((tmp_path / "world" / "web" / "cache" / "cache_info.json").read_text())["complete"]
    checkpoint = tmp_path / "base" / "checkpoints" / "step_00000002"
    assert f"base model: {checkpoint}/model" in capsys.readouterr().out
    model = load_model(checkpoint / "model")
    assert model.family == "stacked" and model.vae is None and model.unet.config.in_channels == 6
    assert load_config(checkpoint / "config.yaml").method.name == "sft"


def test_adherence_scores_generated_clips(stacked):
    """Scores come from the sampled clips: two different models give different clips and scores."""
    from videosspo.alignment import adherence, score_clips
    from videosspo.synth import random_spec, render_clip

    kwargs = dict(frames=FRAMES, size=SIZE, steps=2, guidance=1.0)
    scores, clips = adherence(stacked, PROMPTS, seeds=[0, 1], **kwargs)
    assert clips.shape == (2, 2, FRAMES, SIZE, SIZE, 3) and clips.dtype == np.uint8
    assert set(scores) == {"color", "shape", "direction", "persistence"}
    assert all(v.shape == (2, 2) and ((0 <= v) & (v <= 1)).all() for v in scores.values())
    other = build_model(ModelConfig(family="stacked", vae="none", stacked_frames=FRAMES))
    torch.nn.init.normal_(other.unet.conv_out.weight, std=0.5)
    _, other_clips = adherence(other, PROMPTS, seeds=[0, 1], **kwargs)
    assert not np.array_equal(clips, other_clips)
    # the exact scorers: a rendered clip of the prompt scores 1 on colour and direction
    spec = random_spec(np.random.default_rng(0), 32, 32, 8)
    exact = score_clips(render_clip(spec, 8, 32, 32)[None], [spec.caption])
    assert exact["color"][0] == 1.0 and exact["direction"][0] == 1.0


def test_forwards_per_step_hand_counted():
    """b x (policy fwd+bwd = 3 per clip, reference fwd = 1 per clip, losers: steps x 2 with CFG / reuse)."""
    from videosspo.alignment import ALIGN_CONFIG, forwards_per_step

    def count(**keys):
        overrides = {"optim": {"batch_size": 16}, "loser": {"steps": 10, "guidance": 4.0}}
        for key, value in keys.items():
            section, name = key.split("__")
            overrides.setdefault(section, {})[name] = value
        return forwards_per_step(load_config(ALIGN_CONFIG, overrides))

    assert count(method__name="sft") == 16 * 3
    assert count(method__name="dpo") == 16 * (6 + 2)
    assert count(method__name="sspo") == 16 * (6 + 2 + 20)
    assert count(method__name="sspo", loser__guidance=1.0) == 16 * (6 + 2 + 10)
    assert count(method__name="sspo", loser__reuse=2) == 16 * (6 + 2 + 10)
    assert count(method__name="sspo", loser__init="winner", loser__strength=0.5) == 16 * (6 + 2 + 10)


def test_alignment_study_tiny(stacked, world, tmp_path):
    """The study end to end in tiny form: every output, metrics from generated clips, equal compute, pairing."""
    from benchmarks.alignment_study import main
    from videosspo.alignment import adherence, score_clips

    stacked.save_pretrained(tmp_path / "base")
    result = main(
        [
            "--quick",
            "--variants",
            "base",
            "sft",
            "sspo",
            "--seeds",
            "1",
            "--steps",
            "2",
            "--eval-every",
            "1",
            "--sample-seeds",
            "2",
            "--sample-steps",
            "2",
            "--prompts",
            "2",
            "--out",
            str(tmp_path / "study"),
            "--work",
            str(tmp_path / "work"),
            "--model.pretrained",
            str(tmp_path / "base"),
            "--data.path",
            str(world.curated),
            "--data.latent_cache",
            str(tmp_path / "cache"),
            "--data.frames",
            str(FRAMES),
            "--optim.lr",
            "0.01",
            "--optim.batch_size",
            "2",
            "--optim.ema_decay",
            "0.5",
            "--loser.steps",
            "1",
            "--replay.interval",
            "1",
            "--jobs",
            "2",
        ]
    )  # runs in 2 worker processes
    for name in ("study.json", "study.md", "adherence.png"):
        assert (tmp_path / "study" / name).stat().st_size > 0
    summary = result["summary"]
    assert set(summary) == {"base", "sft", "sspo"}
    sft, sspo, base = summary["sft"], summary["sspo"], summary["base"]
    assert sspo["equal_steps"]["step"] == sspo["equal_compute"]["step"] == 2
    # SFT runs on to the forwards SSPO spends in 2 steps: 2 x 2 x (8 + 2) / (2 x 3) = 6.67 -> 7 steps
    assert sft["equal_steps"]["step"] == 2 and sft["equal_compute"]["step"] == 7
    for split in ("heldout", "seen"):
        for metric, (mean, _) in base["equal_steps"][split].items():
            assert 0 <= mean <= 1, (split, metric)
    runs = {r["variant"]: r for r in result["runs"]}
    assert sorted(map(int, runs["sft"]["evals"])) == [1, 2, 7]
    # computed from the clips each model generates: training changes them
    before, after = runs["base"]["evals"]["0"]["heldout"], runs["sft"]["evals"]["7"]["heldout"]
    assert before["flicker"] != after["flicker"] and before["diversity"] != after["diversity"]
    # paired: every model samples the same (prompt, sample seed 0..n-1) clips, whatever its training seed,
    # so the saved per-clip scores are those of the checkpoint (its model/: the moving average, as the study
    # evaluates with optim.ema_decay) sampled again with seeds 0 and 1
    saved = json.loads((tmp_path / "study" / "runs" / "sft__seed1.json").read_text())["evals"]["7"]["heldout"]
    model = load_model(tmp_path / "work" / "sft_1" / "train" / "checkpoints" / "step_00000007" / "model")
    prompts = heldout_prompts()[:2]
    _, clips = adherence(model, prompts, [0, 1], frames=FRAMES, size=SIZE, steps=2, guidance=4.0)
    again = score_clips(clips.reshape(-1, *clips.shape[2:]), [p for p in prompts for _ in range(2)])
    assert all(saved["scores"][k] == again[k].tolist() for k in again)
    # the paired difference to the base is the mean of per-clip differences (one seed: interval over prompts)
    delta = sft["equal_compute"]["heldout"]["delta_base"]
    assert delta["over"] == "prompts" and delta["mean"] == pytest.approx(after["adherence"] - before["adherence"])
    assert "heldout prompts, equal optimizer steps" in (tmp_path / "study" / "study.md").read_text()
    # the report is rebuilt from the saved runs alone, with their settings
    again = main(["--quick", "--report-only", "--out", str(tmp_path / "study")])
    assert json.dumps(again["summary"]) == json.dumps(summary)  # (nan intervals: one seed)
    assert again["settings"]["seeds_run"]["sft"] == [1]


def test_study_paired_differences_and_intervals_hand_computed():
    """Δ is per clip against the same clip of the other model; 2+ seeds: t over seeds, 1 seed: t over prompts."""
    from scipy import stats

    from benchmarks.alignment_study import paired_delta

    def run(seed, color):  # 2 prompts x 2 sample seeds; shape, direction, persistence 0: adherence = colour / 4
        zeros = [0.0] * 4
        return {
            "variant": "x",
            "seed": seed,
            "steps": 5,
            "equal_compute_steps": 5,
            "evals": {
                "5": {"heldout": {"scores": {"color": color, "shape": zeros, "direction": zeros, "persistence": zeros}}}
            },
        }

    base = {**run(0, [0.0, 0.0, 0.0, 0.0]), "variant": "base", "evals": {}}
    base["evals"]["0"] = run(0, [0.0, 0.0, 0.0, 0.0])["evals"]["5"]
    runs = [run(0, [0.4, 0.4, 0.0, 0.0]), run(1, [0.8, 0.8, 0.8, 0.8])]  # per-seed Δ: 0.05, 0.2
    both = paired_delta(runs, {0: base, 1: base}, "equal_steps", "heldout", "equal_steps", sample_seeds=2)
    assert both["over"] == "seeds" and both["mean"] == pytest.approx(0.125)
    assert both["half"] == pytest.approx(stats.t.ppf(0.975, 1) * np.std([0.05, 0.2], ddof=1) / np.sqrt(2))
    one = paired_delta(runs[:1], {0: base}, "equal_steps", "heldout", "equal_steps", sample_seeds=2)  # prompts: 0.1, 0
    assert one["over"] == "prompts" and one["mean"] == pytest.approx(0.05)
    assert one["half"] == pytest.approx(stats.t.ppf(0.975, 1) * np.std([0.1, 0.0], ddof=1) / np.sqrt(2))
    # against a run of the same seed only (Δ SFT): seed 1 has no partner here
    assert paired_delta(runs, {0: runs[0]}, "equal_steps", "heldout", "equal_steps", 2)["mean"] == 0.0


def test_demo_verdict_is_the_paired_interval_over_prompts():
    """`paired`: per prompt the mean clip difference in adherence; better/worse only when the t-interval excludes 0."""
    from scipy import stats

    from videosspo.alignment import SCORES, paired

    zero = {k: np.zeros((3, 2)) for k in SCORES}
    up = {**zero, "color": np.array([[0.4, 0.4], [0.8, 0.8], [0.4, 0.8]])}  # per prompt Δ = colour / 4: .1 .2 .15
    result = paired(zero, up)
    assert result["mean"] == pytest.approx(0.15)
    assert result["half"] == pytest.approx(stats.t.ppf(0.975, 2) * np.std([0.1, 0.2, 0.15], ddof=1) / np.sqrt(3))
    assert result["verdict"] == "better" and paired(up, zero)["verdict"] == "worse"
    mixed = {**zero, "color": np.array([[0.8, 0.8], [-0.8, -0.8], [0.4, 0.0]])}  # Δ .2 -.2 .05: 0 inside
    assert paired(zero, mixed)["verdict"] == "tied"


def test_study_runs_stay_comparable_across_a_config_comment():
    from benchmarks.alignment_study import settings_key

    run = {"study": {"steps": 60}, "config": "method:\n  beta: 150   # see README\n"}
    assert settings_key(run) == settings_key({**run, "config": "method:\n  beta: 150   # see docs/\n"})
    assert settings_key(run) != settings_key({**run, "config": "method:\n  beta: 151\n"})


def test_prepare_refuses_an_unknown_world_in_one_line(tmp_path):
    from videosspo.alignment import prepare

    config = load_config(
        overrides={
            "model": {"family": "stacked", "vae": "none"},
            "data": {"path": str(tmp_path / "w" / "web"), "world": "v9"},
        }
    )
    with pytest.raises(ConfigError, match=r"data.world 'v9' is not a synthetic world; choose one of \['v1', 'v2'\]"):
        prepare(config, progress=False)
    assert not (tmp_path / "w").exists()


def test_prepare_writes_the_named_world(tmp_path):
    from videosspo.alignment import prepare

    config = load_config(
        overrides={
            "model": {"family": "stacked", "vae": "none", "stacked_frames": FRAMES},
            "data": {
                "path": str(tmp_path / "w" / "web"),
                "world": "v2",
                "synth_if_missing": 16,
                "frames": FRAMES,
                "height": SIZE,
                "width": SIZE,
            },
        }
    )
    prepare(config, progress=False)
    for split in ("web", "curated"):
        info = json.loads((tmp_path / "w" / split / "synth_info.json").read_text())
        assert (info["sizes"], info["travel"]) == ([5, 7], [0.8, 1.0])


def test_study_config_keys_go_under_the_command_line(tmp_path):
    from benchmarks.alignment_study import QUICK, make_config, study_overrides

    (tmp_path / "v2.yaml").write_text(
        "method:\n  beta: 7\ndata:\n  world: v2\n  path: w2/curated\n"
        "sample:\n  steps: 3\n  guidance: 2.0\ntrain:\n  max_steps: 30\n  output_dir: x\n"
    )
    extra = study_overrides(str(tmp_path / "v2.yaml"), ["--method.beta", "9"])
    # the file's train section and sample.steps are the study's own per-run keys
    assert extra == {"method": {"beta": 9}, "data": {"world": "v2", "path": "w2/curated"}, "sample": {"guidance": 2.0}}
    config = make_config("dpo", 0, QUICK, tmp_path, extra, 5)
    assert (config.method.name, config.method.beta, config.data.world, config.data.path) == (
        "dpo",
        9,
        "v2",
        "w2/curated",
    )
    assert (config.train.max_steps, config.train.output_dir, config.sample.steps) == (
        5,
        str(tmp_path),
        QUICK.sample_steps,
    )
    assert config.optim.lr == 5e-4 and study_overrides(None, []) == {}  # the rest: configs/stacked_sspo.yaml's
    # the configs ship `sign`; the study's variants stay named against the paper's switch
    assert load_config(ROOT / "configs/stacked_sspo.yaml").method.ssr_mode == "sign"
    assert [make_config(v, 0, QUICK, tmp_path, {}, 5).method.ssr_mode for v in ("sspo", "sspo/ssr=sign")] == [
        "sft",
        "sign",
    ]
    v2 = make_config("sft", 0, QUICK, tmp_path, study_overrides("benchmarks/testbed/stacked_sspo_v2.yaml", []), 5)
    assert (v2.data.world, v2.model.pretrained, v2.method.beta) == (
        "v2",
        "assets/stacked_base_v2",
        150,
    )


def test_committed_v2_base_is_what_its_config_builds():
    """assets/stacked_base_v2 has the architecture, schedule and words of benchmarks/testbed/stacked_base_v2.yaml."""
    config = load_checked_config(ROOT / "benchmarks/testbed/stacked_base_v2.yaml")
    built, committed = build_model(config.model), load_model(ROOT / "assets/stacked_base_v2")
    assert (committed.unet.config.in_channels, committed.objective) == (26, "v_prediction")
    a, b = (json.loads(m.unet.to_json_string()) for m in (built, committed))
    assert {k: v for k, v in a.items() if k[0] != "_"} == {k: v for k, v in b.items() if k[0] != "_"}
    for key in ("prediction_type", "beta_schedule", "timestep_spacing", "clip_sample"):
        assert built.scheduler.config[key] == committed.scheduler.config[key], key
    assert committed.tokenizer.get_vocab() == built.tokenizer.get_vocab()


def test_word_test_swaps_one_word_and_is_zero_for_a_model_that_ignores_captions(stacked, world, monkeypatch):
    from benchmarks.testbed_check import TIMESTEPS, swapped, word_test
    from videosspo.synth import ClipSpec

    spec = ClipSpec("red", "square", "left", "black", 4, 8.0, 8.0, 1.0)
    assert [swapped(spec, w) for w in ("color", "shape", "direction", "none")] == [
        "a green square moving left",
        "a red circle moving left",
        "a red square moving right",
        "",
    ]
    result = word_test(stacked, world.root, n=4)
    assert set(result) == set(TIMESTEPS) and all(v["own"] > 0 for v in result.values())
    fixed = stacked.encode_prompt(["a red square moving left"])
    monkeypatch.setattr(stacked, "encode_prompt", lambda prompts: fixed.expand(len(prompts), -1, -1))  # captions alike
    for v in word_test(stacked, world.root, n=4).values():
        assert v["gap_color"] == v["gap_shape"] == v["gap_direction"] == v["gap_none"] == 0.0


def test_word_test_measures_the_models_own_target(world, monkeypatch):
    """A v-prediction model is scored against v: the exact v has no error, the exact ε has."""
    from benchmarks.testbed_check import word_test
    from videosspo.synth import ClipSpec, render_clip

    model = build_model(
        ModelConfig(family="stacked", vae="none", stacked_frames=FRAMES, prediction_type="v_prediction")
    )
    rows = [json.loads(line) for line in (world.curated / "metadata.jsonl").read_text().splitlines()][:4]
    clips = np.stack([render_clip(ClipSpec.from_dict(r["attributes"]), FRAMES, SIZE, SIZE) for r in rows])
    x0 = torch.tensor(clips).float().permute(0, 4, 1, 2, 3) / 127.5 - 1
    for target, own in (("v", 0.0), ("epsilon", None)):

        def exact(x_t, t, cond, target=target):
            a = model.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1, 1)
            return (a.sqrt() * x_t - x0) / (1 - a).sqrt() if target == "v" else (x_t - a.sqrt() * x0) / (1 - a).sqrt()

        monkeypatch.setattr(model, "predict", exact)
        errors = [v["own"] for v in word_test(model, world.root, n=4).values()]
        assert all(e < 1e-10 for e in errors) if own == 0.0 else all(e > 1e-3 for e in errors)
