"""Block swap for training: the last N blocks of a denoiser keep their frozen weights in CPU memory (pinned on
CUDA) and upload them just before each forward, releasing them right after (musubi-tuner's design).

- What moves: a block's frozen parameters (the base weights, float8 or not). The LoRA adapters and the buffers
  stay resident: they are small, the optimizer updates the adapters in place on the accelerator, and peft's
  `set_adapter` flips which adapter is trainable (the reference swap), so "frozen" is decided by name.
- Upload is a copy of the CPU tensor; release is free: the parameter points back at its CPU copy (the frozen
  weights never change, so nothing is copied back). On CUDA the next block (in the direction the blocks are
  running: forward, or backward's recomputation) is uploaded ahead on a side stream.
- Backward: with gradient checkpointing a block's forward runs again inside the backward pass, so its hooks
  upload it again; only its inputs were kept. Without checkpointing autograd keeps the tensors a layer
  computed with (views of the uploaded weights) until the backward pass: correct, but the weights' device memory
  is then held until the block's backward, so training saves memory only with checkpointing
  (`model.gradient_checkpointing: true`); no-grad passes (reference, loser sampling) save it either way.

diffusers 0.42's `enable_group_offload(offload_type="block_level")` has the same hooks, for inference: it
offloads every parameter of a group, the trainable LoRA too (its `_offload_to_memory` points a parameter back
at the copy taken when the hook was installed, which drops every optimizer update since; without streams it
moves the parameter off the device its optimizer state lives on), hence this variant.

`CheckpointOffload` (`model.offload_checkpoints`) is the same idea for activations: what the checkpointed blocks keep
(their inputs) waits in CPU memory for the backward pass. Its copies are synchronous (a side stream would overlap
them with compute: not yet measured on a GPU).
"""

from __future__ import annotations

import itertools
import types
import weakref
from contextlib import contextmanager

import torch

from videosspo.config import ConfigError

SWAP_LISTS = ("blocks", "transformer_blocks")  # DiTs' block lists; UNets swap their down, mid and up blocks


def block_lists(denoiser: torch.nn.Module) -> list[list[torch.nn.Module]]:
    """The denoiser's sequences of blocks in execution order: a DiT's block list; a UNet's down, mid and up
    blocks; one list per expert of a two-expert model."""
    for name in SWAP_LISTS:
        if isinstance(getattr(denoiser, name, None), torch.nn.ModuleList):
            return [list(getattr(denoiser, name))]
    if hasattr(denoiser, "down_blocks"):
        mid = [denoiser.mid_block] if getattr(denoiser, "mid_block", None) is not None else []
        return [[*denoiser.down_blocks, *mid, *denoiser.up_blocks]]
    lists = [seq for child in denoiser.children() for seq in block_lists(child)]
    if not lists:
        raise ValueError(f"{type(denoiser).__name__} has no block list to swap ({', '.join(SWAP_LISTS)} or a UNet's)")
    return lists


def swapped_blocks(denoiser: torch.nn.Module, n: int) -> list[torch.nn.Module]:
    """The last `n` blocks of each block list (each expert of a two-expert model swaps its own n)."""
    lists = block_lists(denoiser)
    most = min(len(seq) for seq in lists)
    if n > most:
        raise ConfigError(f"model.blocks_to_swap={n} but {type(denoiser).__name__} has {most} blocks; at most {most}")
    return [block for seq in lists for block in seq[len(seq) - n :]]


class BlockSwap:
    """Keeps `blocks`' frozen parameters on CPU and uploads one block at a time to `device` around its forward.

    `log` records ("in" | "out", block index) as it happens (tests read the schedule from it); `absent`
    maps a frozen weight to what the parameter holds while released (default: its CPU copy; a test passes a
    NaN-filled tensor, so any use of a released block shows).
    """

    def __init__(self, blocks: list[torch.nn.Module], device: torch.device | str, absent=None):
        self.blocks, self.device = blocks, torch.device(device)
        cuda = self.device.type == "cuda"
        self.stored: list[list[tuple[torch.nn.Parameter, torch.Tensor]]] = []
        for block in blocks:
            frozen = [
                (p, p.data.to("cpu").pin_memory() if cuda else p.data.to("cpu"))
                for name, p in block.named_parameters()
                if "lora_" not in name
            ]
            self.stored.append(frozen)
        self.absent = absent or (lambda stored: stored)
        self.stream = torch.cuda.Stream(self.device) if cuda else None
        self.resident: set[int] = set()
        self.prefetched: dict[int, torch.cuda.Event | None] = {}
        self.last = -1
        self.log: list[tuple[str, int]] = []
        self.handles = []
        for i, block in enumerate(blocks):
            block._swapped = {id(p) for p, _ in self.stored[i]}
            block._apply = types.MethodType(_apply_resident, block)  # `.to(device)` (ours, accelerate's) skips them
            self._release(i)
            self.handles.append(block.register_forward_pre_hook(self._pre_hook(i)))
            self.handles.append(block.register_forward_hook(self._post_hook(i)))

    def _upload(self, i: int) -> None:
        for p, stored in self.stored[i]:
            p.data = stored.to(self.device, non_blocking=True)
        self.resident.add(i)
        self.log.append(("in", i))

    def _release(self, i: int) -> None:
        for p, stored in self.stored[i]:
            p.data = self.absent(stored)
        self.resident.discard(i)
        self.log.append(("out", i))

    def _prefetch(self, i: int) -> None:
        """Upload block `i` ahead on the side stream (CUDA only; elsewhere an upload is free)."""
        if self.stream is None or not 0 <= i < len(self.blocks) or i in self.resident:
            return
        with torch.cuda.stream(self.stream):
            self._upload(i)
            event = torch.cuda.Event()
            event.record(self.stream)
        self.prefetched[i] = event

    def _bring(self, i: int) -> None:
        """Make block `i` resident, every other block released (but a prefetch in flight)."""
        for j in self.resident - {i} - set(self.prefetched):
            self._release(j)
        if i not in self.resident:
            self._upload(i)

    def _pre_hook(self, i: int):
        def hook(module, args):
            if i in self.prefetched:
                event = self.prefetched.pop(i)
                torch.cuda.current_stream(self.device).wait_event(event)
                for p, _ in self.stored[i]:  # the allocator must not reuse the memory before compute is done
                    p.data.record_stream(torch.cuda.current_stream(self.device))
            else:
                self._bring(i)
            for j in list(self.prefetched):  # a stale prefetch (the order changed): drop it
                self.prefetched.pop(j)
                self._release(j)
            self._prefetch(i + 1 if i >= self.last else i - 1)  # the direction the blocks run in
            self.last = i

        return hook

    def _post_hook(self, i: int):
        def hook(module, args, output):
            self._release(i)
            if not torch.is_grad_enabled():
                return output
            flat, rebuild = _tensors(output)
            if not any(t.requires_grad for t in flat):
                return output
            return rebuild(_UploadForBackward.apply(self, i, *flat))  # block i is back before its backward

        return hook
        return hook

    def remove(self) -> None:
        """Upload every block for good and drop the hooks."""
        for handle in self.handles:
            handle.remove()
        for i, block in enumerate(self.blocks):
            del block._apply
            self._upload(i)


def _apply_resident(block, fn, recurse=True):
    """`Module._apply` for a swapped block: the swapped parameters are hidden from it (they stay in CPU memory; a
    whole-model `.to(device)`, e.g. accelerate's `prepare`, must not upload them)."""
    hidden = [
        (m, name, p)
        for m in block.modules()
        for name, p in m._parameters.items()
        if p is not None and id(p) in block._swapped
    ]
    for m, name, _ in hidden:
        m._parameters[name] = None
    try:
        return type(block)._apply(block, fn, recurse)
    finally:
        for m, name, p in hidden:
            m._parameters[name] = p


class _UploadForBackward(torch.autograd.Function):
    """Identity on a block's outputs whose backward uploads the block: its backward runs next, reading the weights
    autograd saved (a parameter saved as itself, e.g. a norm's, reads what it points at then)."""

    @staticmethod
    def forward(ctx, swap, i, *outputs):
        ctx.swap, ctx.i = swap, i
        return tuple(o.view_as(o) for o in outputs)

    @staticmethod
    def backward(ctx, *grads):
        ctx.swap._bring(ctx.i)
        return (None, None, *grads)


def _tensors(output):
    """The tensors of a block's output (a tensor, or tuples of them as UNet blocks return) and how to rebuild it."""
    if isinstance(output, torch.Tensor):
        return [output], lambda new: new[0]
    if isinstance(output, (tuple, list)):
        parts = [
            _tensors(o) if isinstance(o, (torch.Tensor, tuple, list)) else ([], lambda new, o=o: o) for o in output
        ]
        sizes = [len(flat) for flat, _ in parts]

        def rebuild(new):
            out, k = [], 0
            for (_, build), n in zip(parts, sizes, strict=True):
                out.append(build(new[k : k + n]))
                k += n
            return type(output)(out)

        return [t for flat, _ in parts for t in flat], rebuild
    return [], lambda new: output


def enable_block_swap(denoiser: torch.nn.Module, n: int, device, absent=None) -> BlockSwap:
    """Swap the last `n` blocks of `denoiser` (`swapped_blocks`) between CPU memory and `device`."""
    return BlockSwap(swapped_blocks(denoiser, n), device, absent)


def to_host(t: torch.Tensor) -> torch.Tensor:
    """A CPU copy of a tensor autograd keeps (pinned on CUDA, so the copy back can overlap compute)."""
    host = torch.empty(t.size(), dtype=t.dtype, layout=t.layout, pin_memory=t.is_cuda)
    return host.copy_(t)


def from_host(host: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The tensor `to_host` copied, back on `device` (the same tensor when `device` is the CPU)."""
    return host.to(device, non_blocking=host.is_pinned())


class CheckpointOffload:
    """`model.offload_checkpoints`: the tensors autograd keeps outside the checkpointed regions of `denoiser` --
    with gradient checkpointing chiefly each checkpointed block's inputs (`torch.utils.checkpoint` saves them with
    `ctx.save_for_backward`, outside its own hooks) -- live in CPU memory and come back when the backward pass
    needs them (the block's recomputation). `torch.autograd.graph.save_on_cpu`'s design (musubi-tuner's
    `--gradient_checkpointing_cpu_offload` moves the same tensors), except that the denoiser's own weights stay
    where they are and a tensor several blocks keep (text, timestep, rotary embeddings) is copied once.

    Use: `with offload(): out = denoiser(...)`; the backward pass may run after the block ends."""

    def __init__(self, denoiser: torch.nn.Module):
        self.denoiser = denoiser

    @contextmanager
    def __call__(self):
        weights = {t.data_ptr() for t in itertools.chain(self.denoiser.parameters(), self.denoiser.buffers())}
        copies: dict[int, tuple] = {}  # id(tensor) -> (its weak reference, what pack returned)

        def pack(t):
            if t.data_ptr() in weights:
                return t
            seen = copies.get(id(t))
            if seen is not None and seen[0]() is t:  # the same live tensor (an id is reused only after it died)
                return seen[1]
            packed = (t.device, to_host(t))
            copies[id(t)] = (weakref.ref(t), packed)
            return packed

        def unpack(packed):
            return packed if isinstance(packed, torch.Tensor) else from_host(packed[1], packed[0])

        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            yield
