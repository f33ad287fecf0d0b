"""Peak accelerator memory of one training step, from the architecture alone (`videosspo estimate`).

The denoiser is built on the meta device (no weights; a tiny model is built for real) and traced once on meta
latents of the run's shape: autograd's saved tensors are counted per block (each storage once), attention as
a fused kernel keeps them (q, k, v, output, log-sum-exp: flash / memory-efficient SDPA and xformers), so

    activations (no checkpointing) = outside the blocks + sum of the blocks'
    activations (checkpointing)    = outside + the blocks' inputs + the largest block (recomputed in backward)
    activations (checkpointing, model.offload_checkpoints: the saved tensors in CPU memory)
                                   = the largest block's inputs (copied back) + the largest of a block and outside

scaled by the forward's batch (DPO/SSPO: winners and losers in one forward, 2 b). The step's peak is the
larger of its two phases, each on top of the resident weights:

    sampling: the loser sampler's no-grad passes (batch b, 2 b with CFG): the largest block's activations
    training: trainable weights + gradients + AdamW moments (2) + the reference adapter + activations + the
              backward's working set (the largest activation tensor)

Weights: the denoiser as the trainer holds it (float32; with `model.fp8_base` its float8 layers, models/fp8.py,
one byte each; with `model.blocks_to_swap` the swapped blocks' frozen weights off the device but one or two,
models/offload.py); the text encoder and VAE in the mixed-precision dtype, resident, except the text encoder with
`data.latent_cache` (`videosspo.latents.encoders_on_cpu`: cached text, the encoder stays on the CPU). Not counted:
the CUDA context and allocator fragmentation (`OVERHEAD_GB` on GPUs), the replay pool and offloaded checkpoints (CPU
memory: printed, not summed), the export.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from models.architectures import ARCHITECTURES, BY_HUB  # the families' published denoisers

GB = 1e9
OVERHEAD_GB = 1.0  # CUDA context + allocator slack on a GPU (torch.cuda.max_memory_allocated does not see it)


def compute_dtype(config) -> torch.dtype:
    """The dtype activations are kept in: the mixed-precision one, else float32."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.train.mixed_precision, torch.float32)


def dtype_bytes(mixed_precision: str) -> int:
    return 2 if mixed_precision in ("bf16", "fp16") else 4


@dataclass(frozen=True)
class Denoiser:
    """What the estimate needs of a denoiser: the module (meta or tiny), how it is called, its latents and text."""

    module: torch.nn.Module
    family: type
    latent: tuple[int, int, int, int]  # c f h w of one clip
    text: tuple[int, int]  # tokens, width
    text_params: float
    vae_params: float


def denoiser_for(config) -> Denoiser:
    """The run's denoiser with its LoRA: a known architecture on the meta device (`ARCHITECTURES`, by name or hub id),
    or the tiny model itself (`model.pretrained: null`)."""
    from models import FAMILIES, build_model
    from models.lora import add_lora

    m, d = config.model, config.data
    name = BY_HUB.get(m.motion_adapter) or BY_HUB.get(m.pretrained, m.pretrained)
    family = FAMILIES[m.family]
    if name in ARCHITECTURES:
        arch = ARCHITECTURES[name]
        from accelerate import init_empty_weights

        with init_empty_weights(include_buffers=True):
            module = family.denoiser_class.from_config(arch["denoiser"])
        c, tf, sf = arch["latent"]
        latent = (c, 1 + (d.frames - 1) // tf, d.height // sf, d.width // sf)
        text, text_params, vae_params = (arch["text_tokens"], arch["text_dim"]), arch["text_params"], arch["vae_params"]
    elif m.pretrained is None:
        model = build_model(m)
        module, latent = model.unet, model.latent_shape(d.frames, d.height, d.width)
        cond = model.encode_prompt(["a"])
        text = tuple(cond.shape[1:])
        text_params = sum(p.numel() for p in model.text_encoder.parameters())
        vae_params = sum(p.numel() for p in model.vae.parameters()) if model.vae is not None else 0
    else:
        from videosspo.config import ConfigError

        raise ConfigError(
            f"model.pretrained={m.pretrained!r} has no architecture the estimator knows; known: "
            f"{', '.join(ARCHITECTURES)} (or their hub ids), or null for the tiny model"
        )
    if m.lora_rank:
        module.requires_grad_(False)
        with init_on(module):
            add_lora(module, m.lora_rank, m.lora_alpha, family.lora_scope.fget(family))  # the class's own scope
    return Denoiser(module, family, latent, text, float(text_params), float(vae_params))


@contextmanager
def init_on(module):
    """New parameters (LoRA) on the device of `module`'s (meta stays meta)."""
    if next(module.parameters()).device.type == "meta":
        from accelerate import init_empty_weights

        with init_empty_weights(include_buffers=True):
            yield
    else:
        yield


class _FusedAttention(torch.autograd.Function):
    """What a fused attention kernel keeps for its backward: q, k, v, the output and the log-sum-exp."""

    @staticmethod
    def forward(ctx, q, k, v):
        out = torch.empty_like(q)
        ctx.save_for_backward(q, k, v, out, q.new_empty(q.shape[:-1], dtype=torch.float32))
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k, v = ctx.saved_tensors[:3]
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _fused_sdpa(query, key, value, *args, **kwargs):
    return _FusedAttention.apply(query, key, value)


@dataclass
class Activations:
    """Bytes autograd keeps for one clip's forward: outside the blocks, per block, and the blocks' inputs."""

    outside: float = 0.0
    blocks: list = dataclasses.field(default_factory=list)
    inputs: list = dataclasses.field(default_factory=list)
    largest: float = 0.0  # the largest single saved tensor

    def total(self, checkpointing: bool, offload: bool = False) -> float:
        """Bytes on the device; `offload` (model.offload_checkpoints): what checkpointing keeps is in CPU memory, and
        the backward pass brings back one block's inputs at a time to recompute it."""
        if checkpointing and offload:
            return max(self.inputs, default=0.0) + max(*self.blocks, self.outside)
        if checkpointing:
            return self.outside + sum(self.inputs) + max(self.blocks, default=0.0)
        return self.outside + sum(self.blocks)

    def offloaded(self) -> float:
        """Bytes `model.offload_checkpoints` keeps in CPU memory: what checkpointing keeps."""
        return self.outside + sum(self.inputs)


def trace_activations(den: Denoiser, dtype: torch.dtype) -> Activations:
    """One clip's forward on the meta device in `dtype`, counting autograd's saved tensors (each storage once)."""
    from models.offload import block_lists

    module = torch.nn.Module.to(copy.deepcopy(den.module).to("meta"), dtype)  # (diffusers' to() warns of fp32 modules)
    for sub in module.modules():  # every saved tensor counted: no checkpointing (bound forwards: models.families, fp8)
        sub.__dict__.pop("forward", None)
        if getattr(sub, "gradient_checkpointing", False):
            sub.gradient_checkpointing = False
    weights = {t.untyped_storage()._cdata for t in itertools.chain(module.parameters(), module.buffers())}
    blocks = [b for seq in block_lists(module) for b in seq]
    acts = Activations(blocks=[0.0] * len(blocks), inputs=[0.0] * len(blocks))
    seen: set[int] = set()
    inputs_seen: set[int] = set()  # the text, timestep and rotary tensors every block gets count once
    where = [None]
    handles = []
    for i, block in enumerate(blocks):

        def pre(mod, args, kwargs, i=i):
            where[0] = i
            for t in itertools.chain(args, *(v if isinstance(v, tuple) else (v,) for v in kwargs.values())):
                if isinstance(t, torch.Tensor) and t.untyped_storage()._cdata not in inputs_seen:
                    inputs_seen.add(t.untyped_storage()._cdata)
                    acts.inputs[i] += t.untyped_storage().nbytes()

        handles.append(block.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(block.register_forward_hook(lambda *a: where.__setitem__(0, None)))

    def pack(t):
        storage = t.untyped_storage()
        if storage._cdata not in seen and storage._cdata not in weights:
            seen.add(storage._cdata)
            size = storage.nbytes()
            acts.largest = max(acts.largest, size)
            if where[0] is None:
                acts.outside += size
            else:
                acts.blocks[where[0]] += size
        return t

    view = object.__new__(den.family)
    view.unet = module
    x = torch.empty(1, *den.latent, device="meta", dtype=dtype, requires_grad=True)
    cond = torch.empty(1, *den.text, device="meta", dtype=dtype)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    torch.nn.functional.scaled_dot_product_attention = _fused_sdpa
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            view._denoise(x, torch.full((1,), 500.0, device="meta", dtype=dtype), cond)
    finally:
        torch.nn.functional.scaled_dot_product_attention = sdpa
        for h in handles:
            h.remove()
    return acts


@dataclass
class Estimate:
    """Peak bytes of one training step by part; `rows` in the order they print."""

    rows: dict
    peak: float
    phase: str  # "training" or "sampling": which phase sets the peak

    def table(self, gpu_gb: float | None = None) -> str:
        lines = [f"{name:<44} {value / GB:8.2f} GB" for name, value in self.rows.items()]
        lines.append(f"{'peak (' + self.phase + ' phase)':<44} {self.peak / GB:8.2f} GB")
        if gpu_gb:
            lines.append(f"{'+ CUDA context, allocator slack':<44} {OVERHEAD_GB:8.2f} GB")
            total = self.peak / GB + OVERHEAD_GB
            lines.append(
                f"{'= on the GPU':<44} {total:8.2f} GB  ({'fits' if total <= gpu_gb else 'does not fit'} {gpu_gb:g} GB)"
            )
        return "\n".join(lines)


def estimate(config, den: Denoiser | None = None, acts: Activations | None = None) -> Estimate:
    """The peak of one step of `config` (per process), split by part."""
    from models.fp8 import quantizable
    from models.offload import swapped_blocks

    m, method = config.model, config.method.name
    den = den or denoiser_for(config)
    acts = acts or trace_activations(den, compute_dtype(config))
    unet = den.module
    lora = {id(p) for n, p in unet.named_parameters() if "lora_" in n}
    trainable = (
        sum(p.numel() for n, p in unet.named_parameters() if "lora_A.default" in n or "lora_B.default" in n)
        if m.lora_rank
        else sum(p.numel() for p in unet.parameters())
    )
    fp8 = {id(mod.weight) for n, mod in unet.named_modules() if m.fp8_base and quantizable(n, mod)}
    swapped = set()
    one_block = 0.0
    if m.blocks_to_swap:
        for block in swapped_blocks(unet, m.blocks_to_swap):
            ids = {id(p) for n, p in block.named_parameters() if "lora_" not in n}
            swapped |= ids
            one_block = max(
                one_block, sum(p.numel() * (1 if id(p) in fp8 else 4) for p in block.parameters() if id(p) in ids)
            )
    frozen = 0.0
    for p in unet.parameters():
        if id(p) in lora or id(p) in swapped or not m.lora_rank:
            continue
        frozen += p.numel() * (1 if id(p) in fp8 else 4)
    rows = {}
    kind = "float8 e4m3 + fp32 rest" if m.fp8_base else "fp32"
    if m.lora_rank:
        rows[f"denoiser frozen weights ({kind})"] = frozen
        if m.blocks_to_swap:
            rows[f"  + swapped blocks in flight ({m.blocks_to_swap} swapped, 2 on device)"] = 2 * one_block
    rows["trainable weights (fp32)" + (" LoRA" if m.lora_rank else "")] = trainable * 4
    rows["gradients (fp32)"] = trainable * 4
    rows["AdamW moments (2 x fp32)"] = trainable * 8
    if config.optim.ema_decay:
        rows["EMA of the trainable weights (fp32)"] = trainable * 4
    if method != "sft":
        rows["reference (" + ("adapter slot" if m.lora_rank else "whole fp32 copy") + ")"] = trainable * 4
    from videosspo.latents import encoders_on_cpu

    enc, dt = (
        dtype_bytes(config.train.mixed_precision),
        {2: "bf16/fp16", 4: "fp32"}[dtype_bytes(config.train.mixed_precision)],
    )
    if "text_encoder" in encoders_on_cpu(config):  # cached text: the encoder stays in CPU memory
        rows[f"text encoder ({dt}, on the CPU: cached text)"] = 0.0
    else:
        rows[f"text encoder ({dt})"] = den.text_params * enc
    rows[f"VAE ({dt})"] = den.vae_params * enc
    b = config.optim.batch_size
    forward_batch = b * (1 if method == "sft" else 2)
    offload = m.gradient_checkpointing and m.offload_checkpoints
    act = acts.total(m.gradient_checkpointing, offload) * forward_batch
    setting = (
        ("checkpointing, offloaded" if offload else "checkpointing") if m.gradient_checkpointing else "no checkpointing"
    )
    rows[f"activations ({setting}, batch {forward_batch})"] = act
    other = acts.total(not m.gradient_checkpointing) * forward_batch
    rows[f"  (the other setting: {'no checkpointing' if m.gradient_checkpointing else 'checkpointing'})"] = other
    if offload:
        rows["  (checkpoints in CPU memory, pinned)"] = acts.offloaded() * forward_batch
    backward = acts.largest * forward_batch
    rows["backward working set"] = backward
    cfg_batch = b * (2 if config.loser.guidance > 1 else 1)
    sampling = max(*acts.blocks, acts.outside) * cfg_batch if method == "sspo" else 0.0
    rows[f"loser sampling (no grad, batch {cfg_batch})"] = sampling
    resident = sum(v for k, v in rows.items() if not k.startswith(("activations", "  (", "backward", "loser")))
    training = resident + act + backward
    sampling_peak = resident - rows["gradients (fp32)"] + sampling  # the update freed the gradients; AdamW's stay
    phase = "training" if training >= sampling_peak else "sampling"
    return Estimate(rows, max(training, sampling_peak), phase)


# Switches tried, cheapest in speed first, to make a run fit `--gpu-gb` (cached text costs no step time: the cache
# is made once, `videosspo data cache-latents`; offloaded checkpoints are only tried with checkpointing).
SWITCHES = (
    ("data.latent_cache", "<cache folder>"),
    ("model.gradient_checkpointing", True),
    ("model.offload_checkpoints", True),
    ("model.fp8_base", True),
)


def fitting_switches(
    config, gpu_gb: float, den: Denoiser | None = None, acts: Activations | None = None
) -> tuple[list[str], Estimate] | None:
    """The fewest switches (checkpointing, fp8, then the fewest swapped blocks) whose
    estimate fits `gpu_gb` with the GPU overhead; None when nothing does."""
    from models.offload import block_lists
    from videosspo.config import ConfigError

    den = den or denoiser_for(config)
    acts = acts or trace_activations(den, compute_dtype(config))
    blocks = min(len(seq) for seq in block_lists(den.module))
    budget = (gpu_gb - OVERHEAD_GB) * GB
    for k in range(len(SWITCHES) + 1):
        for chosen in itertools.combinations(SWITCHES, k):
            if ("model.fp8_base", True) in chosen and not config.model.lora_rank:
                continue
            try:
                cfg = with_switches(config, chosen)
            except ConfigError:  # not with this run (offloaded checkpoints without checkpointing, buckets + cache)
                continue
            for swap in range(config.model.blocks_to_swap, blocks):
                trial = with_switches(cfg, [("model.blocks_to_swap", swap)])
                est = estimate(trial, den, acts)
                if est.peak <= budget:
                    names = [f"{key}: {value}" for key, value in chosen] + (
                        [f"model.blocks_to_swap: {swap}"] if swap != config.model.blocks_to_swap else []
                    )
                    return names, est
    return None


def with_switches(config, switches) -> object:
    """`config` with `switches` ((dotted key, value), ...) set."""
    for key, value in switches:
        section, field = key.split(".")
        part = getattr(config, section)
        config = dataclasses.replace(config, **{section: dataclasses.replace(part, **{field: value})})
    return config


def report(config, gpu_gb: float) -> tuple[str, dict]:
    """The estimate's table for `config`, and what would fit `gpu_gb` (text, and the numbers as a dict)."""
    den = denoiser_for(config)
    acts = trace_activations(den, compute_dtype(config))
    est = estimate(config, den, acts)
    m, d = config.model, config.data
    head = (
        f"{m.family} {m.pretrained or '(tiny)'}, {config.method.name}, LoRA rank {m.lora_rank}, "
        f"{d.frames}x{d.height}x{d.width}, batch {config.optim.batch_size}, {config.train.mixed_precision} "
        f"(fp8_base {m.fp8_base}, blocks_to_swap {m.blocks_to_swap}, checkpointing {m.gradient_checkpointing}, "
        f"offload_checkpoints {m.offload_checkpoints}, cached text {d.latent_cache is not None})"
    )
    lines = [head, est.table(gpu_gb)]
    total = est.peak / GB + OVERHEAD_GB
    fit = None
    if total > gpu_gb:
        found = fitting_switches(config, gpu_gb, den, acts)
        if found is None:
            lines.append(
                f"nothing the estimator knows fits {gpu_gb:g} GB (cached text, checkpointing, offloaded "
                "checkpoints, fp8_base, every block swapped)"
            )
        else:
            fit = {"switches": found[0], "peak_gb": found[1].peak / GB + OVERHEAD_GB}
            lines.append(f"fits {gpu_gb:g} GB with: {', '.join(found[0])} ({fit['peak_gb']:.2f} GB)")
    return "\n".join(lines), {
        "rows_gb": {k: v / GB for k, v in est.rows.items()},
        "peak_gb": total,
        "fits": total <= gpu_gb,
        "phase": est.phase,
        "to_fit": fit,
    }


def cpu_peak_bytes(fn) -> int:
    """Peak bytes torch allocates on CPU while `fn()` runs, above the level at its start (what validates the
    estimate on CPU: tracemalloc does not see torch, RSS lags and keeps freed pages). From torch.profiler's
    memory events: every allocation and free in time order, summed."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e.time_range.start, e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage)
        for e in prof.events()
    )
    level = peak = 0
    for _, delta in events:
        level += delta
        peak = max(peak, level)
    return peak
