"""Tiny random-weight components built from configs, offline, in well under a second.

They make tests and the demo run on CPU with no download. The CLIP tokenizer is CLIP's byte-level
scheme with no merges (514 tokens: 256 bytes, 256 end-of-word bytes, start and end); the T5
tokenizer (DiT families) is a SentencePiece-style unigram over the synthetic world's words plus
single characters (any text tokenizes). Both are built from Python objects and saved/loaded with
the model like the real ones.
"""

from __future__ import annotations

import string

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLCogVideoX,
    AutoencoderKLLTXVideo,
    AutoencoderKLWan,
    CogVideoXDDIMScheduler,
    CogVideoXTransformer3DModel,
    DDPMScheduler,
    FlowMatchEulerDiscreteScheduler,
    LTXVideoTransformer3DModel,
    MotionAdapter,
    WanTransformer3DModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
    UMT5Config,
    UMT5EncoderModel,
)

from models.experts import WanExperts
from videosspo.config import ModelConfig
from videosspo.synth import COLORS, DIRECTIONS, SHAPES

CHANNELS = (32, 64)  # UNet block widths (tiny)
# The random-weight model's sizes (`model.size`): UNet block widths; the DiT families' transformer shapes below.
# `medium` (benchmarks) is about 10x the tiny model's compute with the same text encoder, VAE and latents.
UNET_WIDTHS = {"tiny": CHANNELS, "medium": (64, 128, 256)}
TEXT_DIM = 32  # CLIP hidden size = UNet cross-attention dim
MAX_TOKENS = 77


def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP's reversible map of the 256 bytes to printable unicode characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def tiny_tokenizer(words: tuple[str, ...] = (), max_tokens: int = MAX_TOKENS) -> CLIPTokenizer:
    """Byte-level CLIP tokenizer; each of ``words`` is additionally one token.

    A word becomes one token through a chain of BPE merges (r e -> re, re d</w> -> red</w>); longer
    words' merges rank first so that a shorter word's merge cannot split them (checked).
    """
    symbols = _bytes_to_unicode()
    tokens = symbols + [s + "</w>" for s in symbols]
    merges: list[tuple[str, str]] = []
    for word in sorted(words, key=len, reverse=True):
        pieces = [*word[:-1], word[-1] + "</w>"]
        merged = pieces[0]
        for piece in pieces[1:]:
            if (merged, piece) not in merges:
                merges.append((merged, piece))
            merged += piece
            if merged not in tokens:
                tokens.append(merged)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    tok = CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=merges)
    tok.model_max_length = max_tokens
    split = [w for w in words if len(tok(w).input_ids) != 3]  # <start> word <end>
    assert not split, f"tokenizer merges split the words {split}"
    return tok


def tiny_components(
    cfg: ModelConfig,
    words: tuple[str, ...] = (),
    max_tokens: int = MAX_TOKENS,
    text_layers: int = 2,
    beta_schedule: str = "scaled_linear",
    timestep_spacing: str = "leading",
    clip_sample: bool = False,
) -> dict:
    """Text encoder, tokenizer, VAE (factor 2, or none) and DDPM scheduler, seeded for repeatability.

    The keyword arguments are a family's choices (``VideoDiffusionModel.tiny_options``): whole-word
    tokens, text-encoder depth (0: each token's embedding plus its position, nothing mixed) and the
    noise schedule (`clip_sample`: samplers clamp their x0 estimate to [-1, 1], which pixel-space
    models with a cosine schedule need: at t = T its alpha-bar is ~0 and the estimate explodes).
    """
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer(words, max_tokens)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=TEXT_DIM,
            intermediate_size=64,
            num_hidden_layers=text_layers,
            num_attention_heads=4,
            max_position_embeddings=max_tokens,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    vae = None
    if cfg.vae == "auto":
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            block_out_channels=(16, 32),
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            layers_per_block=1,
            norm_num_groups=8,
            sample_size=32,
        )
    scheduler = DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule=beta_schedule,
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type=cfg.prediction_type,
        clip_sample=clip_sample,
        timestep_spacing=timestep_spacing,
    )
    return {
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler": scheduler,
        "in_channels": vae.config.latent_channels if vae is not None else 3,
    }


def tiny_unet_kwargs(
    in_channels: int,
    cross_attention_dim: int,
    widths: tuple[int, ...] = CHANNELS,
    dims: str = "2D",
    attention_first: bool = True,
) -> dict:
    """A shrunk UNet of blocks `widths`, cross-attention in all but the coarsest block (`attention_first`), or all
    but the finest; `dims` "3D": ModelScope's blocks."""
    plain, attend = (f"DownBlock{dims}",), (f"CrossAttnDownBlock{dims}",) * (len(widths) - 1)
    down = attend + plain if attention_first else plain + attend
    return dict(
        sample_size=16,
        in_channels=in_channels,
        out_channels=in_channels,
        block_out_channels=widths,
        layers_per_block=1,
        norm_num_groups=8,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        down_block_types=down,
        up_block_types=tuple(b.replace("Down", "Up") for b in reversed(down)),
    )


def tiny_unet2d_kwargs(in_channels: int, cross_attention_dim: int, widths: tuple[int, ...] = CHANNELS) -> dict:
    """The SD-1.5-shaped 2-D UNet, shrunk; shared by the `sd` and `animatediff` families."""
    return tiny_unet_kwargs(in_channels, cross_attention_dim, widths)


def tiny_motion_adapter(widths: tuple[int, ...] = CHANNELS) -> MotionAdapter:
    """AnimateDiff motion modules for the tiny 2-D UNet (one motion layer per block, 4 heads)."""
    return MotionAdapter(
        block_out_channels=widths,
        motion_layers_per_block=1,
        motion_norm_num_groups=8,
        motion_num_attention_heads=4,
        motion_max_seq_length=32,
    )


T5_MAX_TOKENS = 16


def tiny_t5_tokenizer() -> T5Tokenizer:
    """Unigram pieces: pad, eos, unk, the synthetic captions' words (one token each), then single characters."""
    words = ["a", "moving", *COLORS, *SHAPES, *DIRECTIONS]
    chars = ["▁", *string.ascii_lowercase, *string.digits, *string.punctuation]
    vocab = (
        [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(f"▁{w}", -1.0) for w in words] + [(c, -5.0) for c in chars]
    )
    tok = T5Tokenizer(vocab=vocab, extra_ids=0)
    tok.model_max_length = T5_MAX_TOKENS
    return tok


def tiny_wan(cfg: ModelConfig) -> dict:
    """Wan's stack, shrunk: UMT5 (32-d), AutoencoderKLWan (4x time, 8x space, 4 channels), a 2-block transformer."""
    torch.manual_seed(0)
    tokenizer = tiny_t5_tokenizer()
    text_encoder = UMT5EncoderModel(UMT5Config(**t5_shape(tokenizer)))
    vae = AutoencoderKLWan(
        base_dim=8,
        z_dim=4,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.1, -0.2, 0.3, 0.0],
        latents_std=[1.5, 2.0, 0.5, 1.0],
    )
    return {
        "unet": tiny_wan_transformer(cfg.size),
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler": FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
        "inference_scheduler": "UniPCMultistepScheduler",
    }  # the hub layout's: its exports sample as WanPipeline does


WAN_SIZES = {
    "tiny": dict(
        num_attention_heads=2, attention_head_dim=8, freq_dim=32, ffn_dim=32, num_layers=2, rope_max_seq_len=32
    ),
    "medium": dict(
        num_attention_heads=4, attention_head_dim=32, freq_dim=64, ffn_dim=512, num_layers=4, rope_max_seq_len=64
    ),
}


def tiny_wan_transformer(size: str = "tiny") -> WanTransformer3DModel:
    """Wan's transformer, shrunk (tiny: 2 blocks of width 16), patches 1 x 2 x 2 (random weights from the global RNG)."""
    return WanTransformer3DModel(
        patch_size=(1, 2, 2), in_channels=4, out_channels=4, text_dim=TEXT_DIM, **WAN_SIZES[size]
    )


def tiny_wan22(cfg: ModelConfig) -> dict:
    """Wan 2.2 A14B's stack, shrunk: `tiny_wan`'s, with its transformer as the high-noise expert and a second,
    differently seeded one as the low-noise expert, switched at A14B's boundary_ratio 0.875."""
    parts = tiny_wan(cfg)
    torch.manual_seed(1)
    high = parts["unet"]
    parts["unet"] = WanExperts(
        expert=dict(high.config), boundary_ratio=0.875, transformer=high, transformer_2=tiny_wan_transformer(cfg.size)
    )
    return parts


# THUDM/CogVideoX-2b/scheduler/scheduler_config.json: v-prediction, SNR shift 3, zero terminal SNR, trailing.
COGVIDEOX_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_schedule="scaled_linear",
    beta_start=0.00085,
    beta_end=0.012,
    prediction_type="v_prediction",
    rescale_betas_zero_snr=True,
    snr_shift_scale=3.0,
    timestep_spacing="trailing",
    set_alpha_to_one=True,
    clip_sample=False,
    steps_offset=0,
)


def t5_shape(tokenizer) -> dict:
    """The tiny T5 / UMT5 encoders' config: 2 layers of 32-d over `tokenizer`'s vocabulary."""
    return dict(
        vocab_size=len(tokenizer),
        d_model=TEXT_DIM,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def tiny_t5(tokenizer: T5Tokenizer) -> T5EncoderModel:
    """A 2-layer 32-d T5 encoder over `tokenizer`'s vocabulary (CogVideoX's and LTX-Video's text encoder, shrunk)."""
    return T5EncoderModel(T5Config(**t5_shape(tokenizer)))


COGVIDEOX_SIZES = {
    "tiny": dict(num_attention_heads=4, attention_head_dim=8, time_embed_dim=2, num_layers=1),
    "medium": dict(num_attention_heads=4, attention_head_dim=32, time_embed_dim=128, num_layers=4),
}


def tiny_cogvideox(cfg: ModelConfig) -> dict:
    """CogVideoX-2b's stack, shrunk: T5 (32-d), AutoencoderKLCogVideoX (4x time, 8x space), a 1-block transformer."""
    torch.manual_seed(0)
    tokenizer = tiny_t5_tokenizer()
    text_encoder = tiny_t5(tokenizer)
    vae = AutoencoderKLCogVideoX(
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        temporal_compression_ratio=4,
    )
    transformer = CogVideoXTransformer3DModel(
        in_channels=4,
        out_channels=4,
        text_embed_dim=TEXT_DIM,
        sample_width=4,
        sample_height=4,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=T5_MAX_TOKENS,
        **COGVIDEOX_SIZES[cfg.size],
    )
    return {
        "unet": transformer,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler": CogVideoXDDIMScheduler(**COGVIDEOX_SCHEDULER),
        "inference_scheduler": "CogVideoXDDIMScheduler",
    }


# Lightricks/LTX-Video/scheduler/scheduler_config.json (LTX-Video 0.9.0, as diffusers' convert_ltx_to_diffusers.py
# writes it): σ shifted by the latent sequence length, μ from 0.95 at 1024 to 2.05 at 4096 tokens, and the
# sampler's grid stretched to end at σ = 0.1 before the last step.
LTX_SCHEDULER = dict(
    num_train_timesteps=1000,
    shift=1.0,
    use_dynamic_shifting=True,
    base_shift=0.95,
    max_shift=2.05,
    base_image_seq_len=1024,
    max_image_seq_len=4096,
    shift_terminal=0.1,
)


LTX_SIZES = {
    "tiny": dict(num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16, num_layers=2),
    "medium": dict(num_attention_heads=4, attention_head_dim=32, cross_attention_dim=128, num_layers=4),
}


def tiny_ltx(cfg: ModelConfig) -> dict:
    """LTX-Video's stack, shrunk: T5 (32-d), AutoencoderKLLTXVideo (8x time as the real one, 8x space where the real
    one has 32x: no 4x4 patching, so 32x32 clips keep 4x4 latents; per-channel latent statistics), a 2-block transformer."""
    torch.manual_seed(0)
    tokenizer = tiny_t5_tokenizer()
    text_encoder = tiny_t5(tokenizer)
    vae = AutoencoderKLLTXVideo(
        latent_channels=4,
        block_out_channels=(8,) * 4,
        decoder_block_out_channels=(8,) * 4,
        layers_per_block=(1,) * 5,
        decoder_layers_per_block=(1,) * 5,
        patch_size=1,
    )
    vae.latents_mean.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
    vae.latents_std.copy_(torch.tensor([1.5, 2.0, 0.5, 1.0]))
    transformer = LTXVideoTransformer3DModel(
        in_channels=4, out_channels=4, caption_channels=TEXT_DIM, **LTX_SIZES[cfg.size]
    )
    return {
        "unet": transformer,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler": FlowMatchEulerDiscreteScheduler(**LTX_SCHEDULER),
    }
