"""`videosspo train ARGS` as a torchrun worker that can SIGKILL its whole run at a chosen moment.

With CRASH_AT=n, rank CRASH_RANK kills the launcher and every worker just before its n-th *event*: a file
operation under the run folder (seen by an audit hook; TensorBoard's writer thread left out) or an
optimizer step. With CRASH_LOG set, each worker writes its events to CRASH_LOG/rank{r}.json at exit, True
for those inside a checkpoint save, so a test can draw its kill moments from an uninterrupted run.
"""

import json
import os
import signal
import sys
from pathlib import Path

from videosspo.cli import main
from videosspo.state import TrainingState
from videosspo.trainer import Trainer

RANK = int(os.environ["RANK"])
OUT = sys.argv[sys.argv.index("--train.output_dir") + 1]
KILL_AT = int(os.environ.get("CRASH_AT", 0)) if int(os.environ.get("CRASH_RANK", 0)) == RANK else 0
FILE_EVENTS = {"open", "os.rename", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree"}
events, saving = [], [False]


def parent(pid: str) -> int:
    return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])


def kill_run() -> None:
    """SIGKILL the launcher, then every worker (this one last): the whole run dies at once."""
    launcher = os.getppid()
    workers = [
        int(p)
        for p in os.listdir("/proc")
        if p.isdigit() and os.path.exists(f"/proc/{p}/stat") and parent(p) == launcher
    ]
    os.kill(launcher, signal.SIGKILL)
    for pid in sorted(workers, key=lambda pid: pid == os.getpid()):
        os.kill(pid, signal.SIGKILL)


def event() -> None:
    events.append(saving[0])
    if len(events) == KILL_AT:
        kill_run()


def audit(name: str, args: tuple) -> None:
    if (
        name in FILE_EVENTS
        and args
        and isinstance(args[0], str)
        and args[0].startswith(OUT)
        and not args[0].startswith(os.path.join(OUT, "logs"))
    ):
        event()


real_step, real_save = Trainer.optimizer_step, TrainingState.save


def optimizer_step(self, batches):
    event()
    return real_step(self, batches)


def save_checkpoint(self):
    saving[0] = True
    try:
        return real_save(self)
    finally:
        saving[0] = False


Trainer.optimizer_step, TrainingState.save = optimizer_step, save_checkpoint
sys.addaudithook(audit)
code = main(["train", *sys.argv[1:]])
if os.environ.get("CRASH_LOG"):
    Path(os.environ["CRASH_LOG"], f"rank{RANK}.json").write_text(json.dumps(events))
sys.exit(code)
