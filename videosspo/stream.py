"""The data stream: which samples each process reads at each step, and the replacement of unreadable ones.

Position p of the global stream is sample `epoch_order(seed, p // n)[p % n]` (`StreamSampler`; WebDataset
shards: `ShardSampler`); optimizer step s reads a contiguous run of it, split process-major inside each
micro-step, and every random draw of a sample derives from its position. A micro-batch whose every clip is
unreadable is replaced by the next one (`Stream.take`); the replacements a process drew shift its stream
(`StreamSampler.skip`), checkpointed so a resumed stream continues where the interrupted one was
(`stream_shift`).
"""

from __future__ import annotations

import collections
from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, Sampler

from videosspo import rng
from videosspo.buckets import Buckets
from videosspo.config import Config, ConfigError
from videosspo.data import Unreadable, UnreadableClips, VideoDataset, collate
from videosspo.latent_dataset import LatentDataset
from videosspo.shards import ProcessStream, ShardDataset, check_shares, is_shards


class StreamSampler(Sampler):
    """This process's share of the global data stream, from optimizer step `start_step` on.

    Position p of the stream is sample `epoch_order(seed, p // n)[p % n]`. Step s reads global batch
    d = s // repeat (each batch serves `repeat` consecutive steps: loser.reuse), i.e. positions
    [d*G, (d+1)*G) with G the global batch; within it micro-step m, process r takes B positions at
    d*G + (m*P + r)*B. Yields lists of (dataset index, global position). `buckets` (data.buckets): epochs of
    `buckets.order`, every global batch one bucket (videosspo.buckets). `skip`: micro-batches this process
    took before `start_step` beyond its share (replacing micro-batches whose every clip was unreadable), so
    a resumed stream continues where the interrupted one was.
    """

    def __init__(
        self,
        n: int,
        batch: int,
        accum: int,
        processes: int,
        rank: int,
        seed: int,
        start_step: int,
        repeat: int = 1,
        skip: int = 0,
        buckets: Buckets | None = None,
    ):
        self.n, self.batch, self.accum, self.processes, self.rank, self.seed = n, batch, accum, processes, rank, seed
        self.start_step, self.repeat, self.skip, self.buckets = start_step, repeat, skip, buckets
        self._orders: dict[int, object] = {}

    @property
    def global_batch(self) -> int:
        return self.batch * self.accum * self.processes

    def index(self, p: int, q: int) -> int:
        """The dataset index at global stream position p (this process's q-th read: unused here)."""
        length = self.buckets.length(self.global_batch) if self.buckets else self.n
        epoch = p // length
        if epoch not in self._orders:
            self._orders = {
                epoch: self.buckets.order(self.seed, epoch, self.global_batch)
                if self.buckets
                else rng.epoch_order(self.seed, epoch, self.n)
            }
        return int(self._orders[epoch][p % length])

    def __iter__(self):
        micro = self.start_step * self.accum + self.skip
        while True:
            step, m = divmod(micro, self.accum)
            local = step // self.repeat * self.accum + m  # this process's micro-batches in the stream before this one
            first = (local * self.processes + self.rank) * self.batch  # = d*G + (m*P + r)*B
            yield [(self.index(first + i, local * self.batch + i), first + i) for i in range(self.batch)]
            micro += 1


class ShardSampler(StreamSampler):
    """`StreamSampler` over WebDataset shards (`videosspo.shards`): the global positions (and so every seed)
    are the same, but the sample at this process's q-th read is sample q of its own shard stream."""

    def __init__(
        self,
        shard_sizes: list[int],
        batch: int,
        accum: int,
        processes: int,
        rank: int,
        seed: int,
        start_step: int,
        repeat: int = 1,
        skip: int = 0,
    ):
        super().__init__(sum(shard_sizes), batch, accum, processes, rank, seed, start_step, repeat, skip)
        self.stream = ProcessStream(shard_sizes, seed, processes, rank)

    def index(self, p: int, q: int) -> int:
        return self.stream[q]

    def __len__(self):  # endless; DataLoader only needs this for its own length, never used
        return 2**62


class StreamDataset(torch.utils.data.Dataset):
    """Reads (index, position) -> sample with frame offsets seeded by the stream position."""

    def __init__(self, dataset: VideoDataset | LatentDataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, item):
        index, position = item
        sample = self.dataset.try_get(index, rng.derive_seed(self.seed, 0, position, "frames"))
        if isinstance(sample, dict):  # else `Unreadable`
            sample["position"] = position
        return sample


def collate_stream(batch):
    """`videosspo.data.collate` (pixels or cached latents) + the stream positions, and the `Unreadable` rows
    under "unreadable" (the only key when every clip of the micro-batch was unreadable)."""
    kept = [s for s in batch if isinstance(s, dict)]
    out = {"unreadable": [s for s in batch if isinstance(s, Unreadable)]}
    if kept:
        out |= collate(kept) | {"positions": [s["position"] for s in kept]}
    return out


class Lookahead:
    """An iterator whose next items can be looked at before they are taken."""

    def __init__(self, items):
        self.items, self.ahead = items, collections.deque()

    def __iter__(self):
        return self

    def __next__(self):
        return self.ahead.popleft() if self.ahead else next(self.items)

    def peek(self, n: int) -> list:
        while len(self.ahead) < n:
            self.ahead.append(next(self.items))
        return list(self.ahead)[:n]


def stream_shift(skips: list[int], saved_batch: int, batch: int, processes: int, rank: int) -> int:
    """Process `rank`'s `StreamSampler.skip` resuming a checkpoint whose processes (one count each, `saved_batch`
    samples per micro-batch) drew `skips` micro-batches to replace unreadable ones; the global batch is the same.

    The same layout keeps each process's own. Another continues only a shift alike on every process: k micro-steps
    of saved_batch x len(skips) samples are k x saved_batch x len(skips) / (batch x processes) here.
    """
    if not any(skips):  # none drawn (or a checkpoint older than the counts)
        return 0
    if len(skips) == processes and saved_batch == batch:
        return skips[rank]
    shift = skips[0] * saved_batch * len(skips)  # samples of the stream
    if len(set(skips)) > 1 or shift % (batch * processes):
        raise ConfigError(
            f"cannot resume on {processes} processes x optim.batch_size {batch}: the checkpoint's "
            f"{len(skips)} processes x optim.batch_size {saved_batch} drew {skips} micro-batches to "
            f"replace unreadable ones, a shift of the data that only that layout continues exactly; "
            f"resume with it"
        )
    return shift // (batch * processes)


def open_dataset(cfg: Config, processes: int, require_loser: bool, encoder=None):
    """The training data data.path names: cached latents (data.latent_cache, written by `encoder`), WebDataset
    shards (a share for each of `processes`) or a metadata file's clips."""
    data_args = dict(
        frames=cfg.data.frames,
        stride=cfg.data.stride,
        height=cfg.data.height,
        width=cfg.data.width,
        require_loser=require_loser,
    )
    if cfg.data.latent_cache:
        if is_shards(cfg.data.path):
            raise ConfigError(
                f"data.latent_cache needs a metadata folder, but data.path {cfg.data.path!r} names "
                f"WebDataset shards; unset data.latent_cache"
            )
        return LatentDataset(cfg.data.latent_cache, cfg.data.path, expect=encoder, **data_args)
    if is_shards(cfg.data.path):
        data = ShardDataset(cfg.data.path, **data_args)
        check_shares(data.shard_sizes, processes, cfg.data.path)
        return data
    return VideoDataset(cfg.data.path, **data_args)


class Stream:
    """This process's micro-batches: the loader over its share of the stream, with unreadable ones replaced.

    `skips` counts the micro-batches it drew to replace all-unreadable ones (checkpointed per process: the
    resumed sampler's `skip`); `unreadable` counts every process's unreadable clips (`gather` collects them:
    each file logged once; every process stops alike past data.max_bad_fraction).
    """

    def __init__(
        self,
        data,
        config: Config,
        processes: int,
        rank: int,
        repeat: int,
        gather: Callable[[list], list],
        verbose: bool,
    ):
        self.data, self.config, self.processes, self.rank, self.repeat = data, config, processes, rank, repeat
        self.gather, self.skips = gather, 0
        self.unreadable = UnreadableClips(len(data), config.data.max_bad_fraction, verbose=verbose)

    def loader(self, step: int) -> DataLoader:
        """The micro-batches from optimizer step `step` on (`skips` replacements later in the stream)."""
        cfg = self.config
        args = (cfg.optim.batch_size, cfg.optim.grad_accum, self.processes, self.rank, cfg.train.seed, step)
        kwargs = dict(repeat=self.repeat, skip=self.skips)
        sampler = (
            ShardSampler(self.data.shard_sizes, *args, **kwargs)
            if isinstance(self.data, ShardDataset)
            else StreamSampler(len(self.data), *args, **kwargs, buckets=self.data.buckets)
        )
        # its own generator: making an iterator draws a worker seed, which would otherwise advance the global RNG
        # (checkpointed), so that a resumed run's RNG state would differ from an uninterrupted one's
        return DataLoader(
            StreamDataset(self.data, cfg.train.seed),
            batch_sampler=sampler,
            collate_fn=collate_stream,
            num_workers=cfg.data.num_workers,
            persistent_workers=cfg.data.num_workers > 0,
            generator=torch.Generator().manual_seed(cfg.train.seed),
        )

    def take(self, batches, n: int) -> tuple[list[dict], int]:
        """The next `n` micro-batches of `batches` that hold a readable clip, and how many unreadable clips every
        process met on the way (a collective)."""
        micro, failed = [], []
        for _ in range(n):
            batch = next(batches)
            failed += batch["unreadable"]
            while "captions" not in batch:  # every clip of the micro-batch was unreadable: take the next one
                if len({bad.index for bad in failed}) == len(self.data):  # none can be read: `add` stops the run
                    break
                batch = next(batches)
                failed += batch["unreadable"]
                self.skips += 1
            micro.append(batch)
        return micro, self.unreadable.add(self.gather(failed))
