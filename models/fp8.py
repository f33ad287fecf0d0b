"""Frozen denoiser weights stored in float8 (e4m3) with a scale per output channel, up-cast per layer for compute.

`model.fp8_base`: every frozen Linear and Conv weight of the denoiser (not the LoRA adapters, not the
embeddings, norms and in/out projections of `SKIP`) is stored as

    w8 = round_e4m3(W / s),   s[o] = max |W[o, ...]| / 448   (448: e4m3's largest finite value)

and each forward computes with W' = w8 · s in the input's dtype (the autocast dtype under mixed precision).
One byte per weight instead of two (bf16) or four (fp32).

Why not diffusers' `enable_layerwise_casting` (checked, tests/test_lowmem.py): it casts a layer's weight
to the compute dtype for its forward, and under training autograd keeps that up-cast copy for the input's
gradient until the backward pass, so a step holds the frozen weights in compute dtype after all; and it
casts without a scale, so weights under e4m3's normal range (2^-6) lose most of their bits. Here the layer
is an autograd function that keeps w8 and s for the backward pass and up-casts again there (grad_x =
grad_y · W' for Linear, the transposed convolution for Conv).

The state dict shows the weights de-quantized to the training dtype (exports, merges and snapshots never see
float8), and loading a state dict quantizes what it writes.
"""

from __future__ import annotations

import re
import types

import torch
import torch.nn.functional as F

FP8 = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8).max  # 448
# Module names left in the training dtype: few parameters, most sensitive (diffusers' layerwise-casting
# defaults plus the embedders, the UNets' conv_in/conv_out and the LoRA adapters).
SKIP = (
    "lora_",
    "embed",
    "norm",
    r"(^|\.)proj_in$",
    r"(^|\.)proj_out$",
    r"(^|\.)conv_in$",
    r"(^|\.)conv_out$",
    "time_proj",
    "caption_projection",
)
CONVS = {
    torch.nn.Conv1d: torch.nn.grad.conv1d_input,
    torch.nn.Conv2d: torch.nn.grad.conv2d_input,
    torch.nn.Conv3d: torch.nn.grad.conv3d_input,
}


def quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(w8, s)`: e4m3 weights and the fp32 scale per output channel (dim 0), s = absmax / 448 (1 for a zero row)."""
    w = weight.detach().float()
    absmax = w.flatten(1).abs().amax(dim=1)
    scale = torch.where(absmax > 0, absmax / FP8_MAX, torch.ones_like(absmax))
    return (w / _per_row(scale, w)).to(FP8), scale


def dequantize(w8: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """W' = w8 · s in `dtype`."""
    return w8.to(dtype) * _per_row(scale, w8).to(dtype)


def _per_row(scale: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return scale.reshape(-1, *[1] * (like.ndim - 1))


class _Fp8Layer(torch.autograd.Function):
    """y = layer(x; W'), keeping only (w8, s) for the backward pass; the frozen weight gets no gradient."""

    @staticmethod
    def forward(ctx, x, w8, scale, module):
        ctx.module, ctx.x_shape, ctx.x_dtype = module, x.shape, x.dtype
        ctx.save_for_backward(w8.detach(), scale)  # the storage computed with (block swap may re-point the parameter)
        return _apply(module, x, dequantize(w8, scale, _compute_dtype(x)))

    @staticmethod
    def backward(ctx, grad):
        w8, scale = ctx.saved_tensors
        module, w = ctx.module, dequantize(w8, scale, grad.dtype)
        if isinstance(module, torch.nn.Linear):
            grad_x = grad @ w  # ... o, o i -> ... i
        else:
            grad_x = CONVS[type(module)](
                ctx.x_shape, w, grad, module.stride, module.padding, module.dilation, module.groups
            )
        return grad_x.to(ctx.x_dtype), None, None, None


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the layer computes in: autocast's where it is on (no full-precision copy first), else the input's."""
    device = x.device.type
    on = torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device)
    return torch.get_autocast_dtype(device) if on else x.dtype


def _apply(module, x, w):
    bias = None if module.bias is None else module.bias.to(w.dtype)
    if isinstance(module, torch.nn.Linear):
        return F.linear(x.to(w.dtype), w, bias)
    return module._conv_forward(x.to(w.dtype), w, bias)


def _fp8_forward(module, x):
    if torch.is_grad_enabled() and x.requires_grad:
        return _Fp8Layer.apply(x, module.weight, module.weight_scale, module)
    return _apply(module, x, dequantize(module.weight, module.weight_scale, _compute_dtype(x)))  # nothing to save


def _state_dict_hook(module, state_dict, prefix, local_metadata):
    """The state dict's weight de-quantized to the training dtype (the bias's, which stays unquantized)."""
    key = prefix + "weight"
    if key in state_dict:
        state_dict[key] = dequantize(state_dict[key], module.weight_scale, module.training_dtype)


def _load_pre_hook(module, state_dict, prefix, *args):
    """A weight being loaded is quantized (its scale set) before torch copies it into the float8 parameter."""
    key = prefix + "weight"
    if key in state_dict and state_dict[key].dtype != FP8:
        w8, scale = quantize(state_dict[key].to(module.weight.device))
        module.weight_scale.copy_(scale)
        state_dict[key] = w8


def quantizable(name: str, module: torch.nn.Module) -> bool:
    """A frozen Linear or zero-padded Conv outside `SKIP`."""
    if not (
        isinstance(module, torch.nn.Linear)
        or (type(module) in CONVS and module.padding_mode == "zeros" and not isinstance(module.padding, str))
    ):
        return False
    frozen = not module.weight.requires_grad and (module.bias is None or not module.bias.requires_grad)
    return frozen and not any(re.search(p, name) for p in SKIP)


def enable_fp8_storage(denoiser: torch.nn.Module) -> int:
    """Store `denoiser`'s frozen Linear/Conv weights (`quantizable`) in float8 with per-channel scales; returns how
    many layers. Call it after LoRA is added (the adapters stay trainable, in their dtype) and before the model moves
    to the accelerator (the full-precision weights never reach it). DDP is told not to broadcast the float8 weights
    (every process builds the same ones; gloo cannot send float8)."""
    layers = [(name, m) for name, m in denoiser.named_modules() if quantizable(name, m)]
    for _, module in layers:
        w8, scale = quantize(module.weight)
        module.training_dtype = module.weight.dtype
        module.weight = torch.nn.Parameter(w8, requires_grad=False)
        module.register_buffer("weight_scale", scale, persistent=False)
        module.forward = types.MethodType(_fp8_forward, module)
        module._register_state_dict_hook(_state_dict_hook)
        module._register_load_state_dict_pre_hook(_load_pre_hook, with_module=True)
    ignore = getattr(denoiser, "_ddp_params_and_buffers_to_ignore", [])
    denoiser._ddp_params_and_buffers_to_ignore = [*ignore, *(f"{name}.weight" for name, _ in layers)]
    return len(layers)


def weight_bytes(module: torch.nn.Module) -> dict[str, int]:
    """Bytes of `module`'s parameters and buffers by dtype, measured from the tensors."""
    out: dict[str, int] = {}
    for t in [*module.parameters(), *module.buffers()]:
        out[str(t.dtype).removeprefix("torch.")] = (
            out.get(str(t.dtype).removeprefix("torch."), 0) + t.numel() * t.element_size()
        )
    return out
