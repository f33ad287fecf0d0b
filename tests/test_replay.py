import json
from itertools import pairwise

import pytest
import torch

from videosspo.replay import EVICTIONS, STRATEGIES, ReplayPool

TINY_GB = 1e-6  # 1000 bytes


def snap(step, n=100):
    """A snapshot whose values identify its step: 'w' is n float32 (4n bytes), plus a bf16 and an int tensor."""
    return {
        "w": torch.full((n,), float(step)),
        "lora.A": torch.arange(6, dtype=torch.bfloat16).reshape(2, 3) + step,
        "count": torch.tensor([step], dtype=torch.int64),
    }


def assert_snap_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def filled(pool, steps, n=100):
    for s in steps:
        pool.add(s, snap(s, n))
    return pool


# ---- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"size": 0}, "replay.size.*0"),
        ({"interval": 0}, "replay.interval.*0"),
        ({"strategy": "uniform"}, r"replay.strategy.*random, latest, initial.*'uniform'"),
        ({"evict": "lru"}, r"replay.evict.*oldest, random.*'lru'"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReplayPool(**kwargs)


def test_constants():
    assert STRATEGIES == ("random", "latest", "initial")
    assert EVICTIONS == ("oldest", "random")


def test_due():
    pool = ReplayPool(interval=30)
    assert [s for s in range(0, 100) if pool.due(s)] == [30, 60, 90]
    assert not ReplayPool(size=1).due(30)  # nothing but θ0 is kept


# ---- adding and evicting -----------------------------------------------------------------------


def test_theta0_retained_through_many_adds():
    pool = filled(ReplayPool(size=3, interval=10), range(0, 1000, 10))
    assert len(pool) == 3 and pool.steps == [0, 980, 990]
    assert_snap_equal(pool.get(0), snap(0))


def test_eviction_order_oldest_after_theta0():
    pool = ReplayPool(size=4, interval=10)
    history = []
    for s in range(0, 70, 10):
        pool.add(s, snap(s))
        history.append(pool.steps)
    assert history == [
        [0],
        [0, 10],
        [0, 10, 20],
        [0, 10, 20, 30],
        [0, 20, 30, 40],
        [0, 30, 40, 50],
        [0, 40, 50, 60],
    ]
    for i, s in enumerate(pool.steps):
        assert_snap_equal(pool.get(i), snap(s))


def test_random_eviction_keeps_theta0_and_is_seeded_by_step():
    def history(evict):
        pool, out = ReplayPool(size=4, evict=evict), []
        for s in range(0, 400, 10):
            pool.add(s, snap(s))
            out.append(pool.steps)
        return out

    a, b = history("random"), history("random")
    assert a == b
    assert a != history("oldest")
    for held, s in zip(a, range(0, 400, 10), strict=True):
        assert held[0] == 0 and held[-1] == s and len(held) == min(s // 10 + 1, 4) and held == sorted(held)
    evicted = [sorted(set(prev) - set(cur)) for prev, cur in pairwise(a[3:])]
    positions = {a[3 + i].index(e[0]) for i, e in enumerate(evicted)}
    assert positions == {1, 2, 3}  # every non-θ0 position gets evicted at some point


def test_size_one_holds_theta0_only():
    pool = filled(ReplayPool(size=1), [0, 30, 60])
    assert pool.steps == [0]
    assert all(pool.draw(seed=0, step=s) == 0 for s in range(50))


def test_add_stores_a_detached_cpu_copy():
    w = torch.ones(4, requires_grad=True)
    pool = ReplayPool()
    pool.add(0, {"w": w})
    with torch.no_grad():
        w.add_(1.0)
    got = pool.get(0)["w"]
    assert torch.equal(got, torch.ones(4)) and not got.requires_grad and got.device.type == "cpu"


def test_steps_must_increase():
    pool = filled(ReplayPool(), [0, 30])
    with pytest.raises(ValueError, match="must increase"):
        pool.add(30, snap(30))


# ---- drawing -----------------------------------------------------------------------------------


def test_random_draw_is_uniform_over_held_snapshots():
    pool = filled(ReplayPool(size=5), [0, 10, 20, 30, 40])
    n, k = 2000, 5
    counts = torch.bincount(torch.tensor([pool.draw(seed=7, step=s) for s in range(n)]), minlength=k)
    assert counts.numel() == k
    chi2 = (((counts - n / k) ** 2) / (n / k)).sum().item()
    assert chi2 < 18.47, counts  # chi-square, 4 degrees of freedom, p = 0.001


def test_random_draw_covers_only_snapshots_saved_so_far():
    pool = filled(ReplayPool(size=7), [0, 30])
    assert {pool.draw(seed=0, step=s) for s in range(200)} == {0, 1}


def test_draw_is_a_pure_function_of_seed_and_step():
    a = filled(ReplayPool(size=7), range(0, 70, 10))
    b = filled(ReplayPool(size=7), range(0, 70, 10))
    draws = [a.draw(seed=3, step=s) for s in range(100)]
    assert draws == [a.draw(seed=3, step=s) for s in range(100)]
    assert draws == [b.draw(seed=3, step=s) for s in range(100)]
    assert draws != [a.draw(seed=4, step=s) for s in range(100)]


@pytest.mark.parametrize("strategy,expected", [("latest", lambda k: k - 1), ("initial", lambda k: 0)])
def test_deterministic_strategies(strategy, expected):
    pool = ReplayPool(size=4, strategy=strategy)
    for s in range(0, 100, 10):
        pool.add(s, snap(s))
        assert all(pool.draw(seed=0, step=t) == expected(len(pool)) for t in range(s, s + 20))


def test_draw_on_empty_pool():
    with pytest.raises(RuntimeError, match="empty"):
        ReplayPool().draw(seed=0, step=0)


# ---- spilling ----------------------------------------------------------------------------------


def test_spill_past_budget_keeps_theta0_and_newest_in_memory(tmp_path):
    # Each snapshot is 400 + 12 + 8 = 420 bytes; a 1000-byte budget holds two.
    pool = filled(ReplayPool(size=7, cpu_budget_gb=TINY_GB, spill_dir=tmp_path), [0, 10, 20, 30])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap_00000010.safetensors", "snap_00000020.safetensors"]
    assert pool.cpu_bytes == 2 * 420
    for i, s in enumerate(pool.steps):
        assert_snap_equal(pool.get(i), snap(s))


def test_snapshot_larger_than_budget_is_spilled_itself(tmp_path):
    pool = filled(ReplayPool(cpu_budget_gb=TINY_GB, spill_dir=tmp_path), [0, 10, 20], n=1000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap_00000010.safetensors", "snap_00000020.safetensors"]
    for i, s in enumerate(pool.steps):
        assert_snap_equal(pool.get(i), snap(s, 1000))


def test_evicting_a_spilled_snapshot_deletes_its_file(tmp_path):
    pool = filled(ReplayPool(size=3, cpu_budget_gb=TINY_GB, spill_dir=tmp_path), [0, 10, 20], n=1000)
    assert (tmp_path / "snap_00000010.safetensors").exists()
    pool.add(30, snap(30, 1000))
    assert pool.steps == [0, 20, 30]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap_00000020.safetensors", "snap_00000030.safetensors"]


def test_over_budget_without_spill_dir():
    pool = filled(ReplayPool(cpu_budget_gb=TINY_GB), [0], n=1000)  # θ0 stays in memory regardless
    with pytest.raises(RuntimeError, match="replay.spill_dir"):
        pool.add(10, snap(10, 1000))


# ---- state -------------------------------------------------------------------------------------


def assert_same_pool(a, b):
    assert a.steps == b.steps and len(a) == len(b)
    for i in range(len(a)):
        assert_snap_equal(a.get(i), b.get(i))
    assert [a.draw(seed=1, step=s) for s in range(200)] == [b.draw(seed=1, step=s) for s in range(200)]


def test_save_load_round_trip(tmp_path):
    pool = filled(ReplayPool(size=4, evict="random", cpu_budget_gb=TINY_GB, spill_dir=tmp_path / "a"), range(0, 90, 10))
    pool.save(tmp_path / "ckpt")
    index = json.loads((tmp_path / "ckpt" / "replay" / "index.json").read_text())
    assert [e["step"] for e in index["snapshots"]] == pool.steps
    assert all((tmp_path / "ckpt" / "replay" / f"{e['digest']}.safetensors").exists() for e in index["snapshots"])

    restored = filled(ReplayPool(size=4, evict="random", cpu_budget_gb=TINY_GB, spill_dir=tmp_path / "b"), [0, 5])
    restored.load(tmp_path / "ckpt")  # replaces what it held
    assert_same_pool(pool, restored)
    pool.add(90, snap(90))
    restored.add(90, snap(90))
    assert_same_pool(pool, restored)


def test_a_loaded_pool_spills_and_evicts_like_the_saved_one(tmp_path):
    kwargs = dict(size=4, cpu_budget_gb=TINY_GB)
    pool = filled(ReplayPool(**kwargs, spill_dir=tmp_path / "a"), range(0, 60, 10))  # 0, 30, 40, 50; 30, 40 spilled
    pool.save(tmp_path / "ckpt")
    restored = ReplayPool(**kwargs, spill_dir=tmp_path / "b")
    restored.load(tmp_path / "ckpt")
    assert_same_pool(pool, restored)
    assert (tmp_path / "b" / "snap_00000030.safetensors").exists()  # over the budget again: spilled as before
    restored.add(60, snap(60))  # training goes on: evicts the spilled step 30 and deletes its file
    assert restored.steps == [0, 40, 50, 60]
    assert not (tmp_path / "b" / "snap_00000030.safetensors").exists()


def test_load_rejects_config_mismatch(tmp_path):
    filled(ReplayPool(size=4), [0, 10]).save(tmp_path)
    with pytest.raises(ValueError, match="interval: saved 30, configured 10"):
        ReplayPool(size=4, interval=10).load(tmp_path)
    with pytest.raises(ValueError, match=r"size: saved 4, configured 7"):
        ReplayPool(size=7).load(tmp_path)
    with pytest.raises(ValueError, match=r"strategy: saved 'random', configured 'latest'"):
        ReplayPool(size=4, strategy="latest").load(tmp_path)


# Two processes of one node (torchrun, gloo): the first writes each snapshot, both map the same files.
NODE_SCRIPT = """
import json, os, sys
from pathlib import Path
import torch, torch.distributed as dist
from videosspo.replay import NodeShare, ReplayPool

dist.init_process_group("gloo")
rank, folder = dist.get_rank(), Path(sys.argv[1])
pool = ReplayPool(size=3, interval=1, share=NodeShare(folder, writer=rank == 0, barrier=dist.barrier))
for step in range(4):
    pool.add(step, {"w": torch.full((64,), float(step + rank))})  # rank 1's own values are never used
mapped = sorted({line.split()[5] for line in open("/proc/self/maps")
                 if str(folder) in line and not line.rstrip().endswith("(deleted)")})
report = {"mapped": mapped, "inodes": [os.stat(p).st_ino for p in mapped],
          "values": [pool.get(i)["w"][0].item() for i in range(len(pool))]}
Path(sys.argv[2], f"rank{rank}.json").write_text(json.dumps(report))
dist.barrier()
"""


def test_two_local_processes_map_the_one_node_copy(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import ROOT

    node, script = tmp_path / "node", tmp_path / "node_pool.py"
    script.write_text(NODE_SCRIPT)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            str(node),
            str(tmp_path),
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    files = [str(node / f"snap_{s:08d}.safetensors") for s in (0, 2, 3)]  # size 3: θ0 kept, step 1 evicted
    assert r0["mapped"] == r1["mapped"] == files and r0["inodes"] == r1["inodes"]
    assert sorted(str(p) for p in node.iterdir()) == files  # one copy of each on the node
    assert r0["values"] == r1["values"] == [0.0, 2.0, 3.0]  # rank 0's snapshots, seen by both


def test_a_run_with_node_shared_snapshots_equals_one_with_its_own_copies(tiny_config, tmp_path):
    from videosspo.trainer import Trainer

    own = Trainer(tiny_config(**{"train.output_dir": str(tmp_path / "own")}))
    shared = Trainer(
        tiny_config(**{"train.output_dir": str(tmp_path / "shared"), "replay.node_dir": str(tmp_path / "node")})
    )
    own.fit()
    shared.fit()
    assert own.pool.steps == shared.pool.steps == [0, 1, 2]
    for i in range(len(own.pool)):
        assert_snap_equal(own.pool.get(i), shared.pool.get(i))
    a, b = own.model.unet.state_dict(), shared.model.unet.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    maps = open("/proc/self/maps").read()
    assert str(tmp_path / "node") in maps  # the pool's tensors are maps of the node's files ...
    assert not any((tmp_path / "node").iterdir())  # ... whose run folder is removed at the end
