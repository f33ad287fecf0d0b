"""The preference guard (videosspo.guard) on synthetic metric streams, and in a real run."""

import json

import pytest

from videosspo.guard import WINDOW, Guard


def probe_of(*batches):
    """A probe returning the given per-sample errors, one list per call (θ0's first)."""
    calls = iter(batches)
    return lambda: next(calls)


def test_fires_once_when_the_winners_error_drifts_up_against_theta0():
    """The drift averages the last 3 measurements: a one-probe spike (1.6) stays silent, a sustained rise fires."""
    guard = Guard("warn", every=2, drift=0.25, loser=3.0)
    probes = [1.0, 1.0, 1.0, 1.6, 1.0, 1.0, 1.3, 1.4, 1.5]  # θ0 first; then one per probe (steps 2, 4, ..., 16)
    guard.attach(lambda: probe_of(*([e, e] for e in probes)), step=0)
    stats = [{} for _ in range(16)]
    alarms = [guard.observe(step, s) for step, s in enumerate(stats, start=1)]
    assert "guard/drift" not in stats[0]  # nothing measured yet
    drifts = [stats[k]["guard/drift"] for k in range(1, 16, 2)]  # at the probes: means of the last 3
    assert drifts == pytest.approx([0.0, 0.0, 0.2, 0.2, 0.2, 0.1, 0.7 / 3, 0.4])
    assert stats[2]["guard/drift"] == stats[1]["guard/drift"]  # held between probes
    assert alarms[:15] == [None] * 15 and guard.fired == 16
    assert "+40% against θ0's over the last 3 measurements (1.4 vs 1;" in alarms[15]
    assert stats[15]["guard/e_fixed"] == pytest.approx(1.5) and stats[15]["guard/e_fixed_theta0"] == 1.0
    assert guard.observe(17, {}) is None  # once


def test_fires_when_the_loser_term_dominates_over_a_full_window():
    guard = Guard("warn", every=1, drift=0.25, loser=3.0)  # no probe: the drift is not watched
    stream = [{"loss/e_l": 1.0, "ref/e_l": 0.05}] * (WINDOW - 1) + [{"loss/e_l": 0.0, "ref/e_l": 0.05}]
    alarms = [guard.observe(step, dict(s)) for step, s in enumerate(stream, start=1)]
    assert alarms[:-1] == [None] * (WINDOW - 1)  # a part-filled window never fires
    assert "16x the reference's" in alarms[-1]  # Σ e_l / Σ ref_e_l = 4.0 / 0.25
    assert guard.fired == WINDOW


@pytest.mark.parametrize("stream", ["sft", "sign"])
def test_stays_silent_on_healthy_streams(stream):
    """SFT: the winners' error falls and there is no loser; sign: the loser's error wanders around the reference's."""
    guard = Guard("stop", every=1, drift=0.25, loser=3.0)
    errors = (
        [[1.0 - 0.02 * k, 1.1 - 0.02 * k] for k in range(41)]
        if stream == "sft"
        else [[1.0 + 0.2 * (k % 2), 1.0] for k in range(41)]
    )  # drift at most +10%
    guard.attach(lambda: probe_of(*errors), step=0)
    for step in range(1, 41):
        stats = {} if stream == "sft" else {"loss/e_l": 0.05 * (1 + 2 * (step % 3 == 0)), "ref/e_l": 0.05}
        assert guard.observe(step, stats) is None
    assert guard.fired is None


def test_off_measures_nothing():
    def make_probe():
        raise AssertionError("guard: off must not build the fixed batch")

    guard = Guard("off", every=1, drift=0.0, loser=0.0)
    guard.attach(make_probe, step=0)
    stats = {"loss/e_l": 9.0, "ref/e_l": 0.1}
    assert guard.observe(1, stats) is None and stats == {"loss/e_l": 9.0, "ref/e_l": 0.1}


def test_state_round_trip_continues_like_the_uninterrupted_guard():
    errors = [[1.0], *([[1.0 + 0.05 * k] for k in range(1, 13)])]
    stream = [{"loss/e_l": 0.1 * k, "ref/e_l": 0.1} for k in range(1, 13)]
    whole = Guard("warn", every=1, drift=0.4, loser=5.0)
    whole.attach(lambda: probe_of(*errors), step=0)
    expected = [(whole.observe(k, s := dict(stream[k - 1])), s) for k in range(1, 13)]
    first = Guard("warn", every=1, drift=0.4, loser=5.0)
    first.attach(lambda: probe_of(*errors[:7]), step=0)
    for k in range(1, 7):
        first.observe(k, dict(stream[k - 1]))
    resumed = Guard("warn", every=1, drift=0.4, loser=5.0)
    resumed.load_state_dict(first.state_dict())
    resumed.attach(lambda: probe_of(*errors[7:]), step=6)  # a resumed run: θ0's errors come from the checkpoint
    got = [(resumed.observe(k, s := dict(stream[k - 1])), s) for k in range(7, 13)]
    assert got == expected[6:]


@pytest.mark.parametrize("mode", ["warn", "stop"])
def test_a_real_run_trips_the_guard_and_stops_naming_the_kept_checkpoint(tiny_config, mode):
    """Diffusion-DPO at lr 0.1 wrecks the tiny model: the fixed winners' error rises, the guard fires at its
    first probe (step 3); the checkpoint before it survives pruning, and `stop` ends the run there."""
    from videosspo.guard import GuardStop
    from videosspo.trainer import Trainer

    trainer = Trainer(
        tiny_config(
            **{
                "method.name": "dpo",
                "optim.lr": 0.1,
                "train.max_steps": 6,
                "train.checkpoint_every": 1,
                "train.keep_checkpoints": 2,
                "train.guard": mode,
                "train.guard_every": 3,
            }
        )
    )
    if mode == "stop":
        with pytest.raises(
            GuardStop,
            match=r"ended the run at step 3\. Training turned anomalous at step 3 \(preference "
            r"guard: the winners' error on the fixed batch is \+\d+% against θ0's .*\): "
            r".*step_00000002, the last checkpoint written before it, is kept",
        ):
            trainer.fit()
        return
    summary = trainer.fit()
    assert summary["divergence"]["step"] == 3 and summary["divergence"]["kept"] == "step_00000002"
    assert "preference guard" in summary["divergence"]["why"]
    assert sorted(p.name for p in (trainer.out / "checkpoints").glob("step_*")) == [
        "step_00000002",
        "step_00000005",
        "step_00000006",
    ]
    metrics = [json.loads(line) for line in (trainer.out / "metrics.jsonl").read_text().splitlines()]
    assert metrics[2]["guard/drift"] > 0.25 and "guard/drift" not in metrics[0]
    # resumed, the guard keeps θ0's errors on the fixed winners (the checkpoint holds them)
    resumed = Trainer(
        tiny_config(**{"method.name": "dpo", "train.resume": "latest", "train.max_steps": 7, "train.guard_every": 3})
    )
    resumed.fit()
    assert resumed.health.guard.theta0 == trainer.health.guard.theta0
