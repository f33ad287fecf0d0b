"""docs/your-own-videos.md's walkthrough works as written: its bash blocks, run in order through the installed `videosspo`
command, on a tiny random-weight model for 2 steps (the only changes, each asserted to apply)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "your-own-videos.md"
BIN = Path(sys.executable).parent  # the venv's bin: `videosspo` as the user runs it

TINY = (
    "configs/tiny_animatediff_sspo.yaml --data.frames 2 --data.height 16 --data.width 16 --loser.steps 2 "
    "--sample.steps 2 --replay.interval 1 --optim.warmup_steps 0"
)
# (what the page says, what the test runs instead): tiny model, 2 steps, no install
TINY_SETTINGS = [
    ("make install", "true"),
    ("source .venv/bin/activate", f"export PATH={BIN}:$PATH"),
    ("configs/animatediff_sspo.yaml", TINY),  # in `config --show` and in `train`
    ("--train.max_steps 1000 --train.checkpoint_every 500", "--train.max_steps 2 --train.checkpoint_every 1"),
    ("step_00000500", "step_00000001"),
    ("step_00001000", "step_00000002"),
    ("videosspo sample ", "videosspo sample --steps 2 "),
]


SECTION = "## From a folder of clips to a compared LoRA\n"


def page_script() -> str:
    text = PAGE.read_text()
    section = text[text.index(SECTION) :]
    section = section[: section.find("\n## ", len(SECTION))]  # up to the next section: the reference below
    blocks = re.findall(r"```(bash|python)\n(.*?)```", section, flags=re.S)  # python blocks: run with python
    script = "\n".join(text if lang == "bash" else f"python - <<'PYTHON'\n{text}PYTHON" for lang, text in blocks)
    for said, tiny in TINY_SETTINGS:
        assert said in script, f"the page no longer says {said!r}: update TINY_SETTINGS"
        script = script.replace(said, tiny)
    return "set -euo pipefail\n" + script


def test_the_own_videos_page_runs_as_written(tmp_path):
    from videosspo.synth import make_dataset

    for shared in ("configs", "benchmarks"):  # the page runs from the repository root
        (tmp_path / shared).symlink_to(ROOT / shared)
    clips = make_dataset(tmp_path / "my_clips", n=4, frames=4, height=16, width=16, progress=False)
    for row in map(json.loads, (clips / "metadata.jsonl").read_text().splitlines()):  # clips + a .txt caption each
        (clips / row["video"]).with_suffix(".txt").write_text(row["caption"] + "\n")
    (clips / "metadata.jsonl").unlink()

    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", "-c", page_script()], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr

    rows = [json.loads(line) for line in (clips / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all((clips / r["video"]).is_file() and r["caption"] for r in rows)
    assert sorted(p.name for p in (tmp_path / "runs/my_lora/checkpoints").iterdir()) == [
        "step_00000001",
        "step_00000002",
    ]
    for step in ("step_500", "step_1000"):
        captions = [json.loads(line) for line in (tmp_path / "samples" / step / "metadata.jsonl").open()]
        assert [c["caption"] for c in captions] == [
            "a sailboat crossing a lake at sunset",
            "a city street at night in the rain",
        ]
    per_video = [json.loads(line) for line in (tmp_path / "eval/step_1000/per_video.jsonl").open()]
    assert {v["prompt"] for v in per_video} == {c["caption"] for c in captions}  # scored against its own prompt
    assert (tmp_path / "eval/compare/compare.md").is_file()
    assert "| dimension | my_clips | step_500 | step_1000 |" in result.stdout  # --compare prints its table
