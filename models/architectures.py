"""The families' published denoisers, by architecture name: what `videosspo estimate` builds on the meta device.

Each entry: its family, hub id, the denoiser's diffusers config (config.json of the repository's denoiser; no
download needed), the frozen encoders' parameter counts, text tokens and width, and the latent layout.
"""

from __future__ import annotations

# Encoders' parameter counts: UMT5-XXL encoder 5.68e9 (Wan), CLIP ViT-L/14 text 1.23e8 (SD 1.5).
WAN_1_3B = {
    "attention_head_dim": 128,
    "cross_attn_norm": True,
    "eps": 1e-06,
    "ffn_dim": 8960,
    "freq_dim": 256,
    "in_channels": 16,
    "num_attention_heads": 12,
    "num_layers": 30,
    "out_channels": 16,
    "patch_size": [1, 2, 2],
    "qk_norm": "rms_norm_across_heads",
    "rope_max_seq_len": 1024,
    "text_dim": 4096,
}
WAN_14B = {**WAN_1_3B, "ffn_dim": 13824, "num_attention_heads": 40, "num_layers": 40}
ANIMATEDIFF = {
    "sample_size": 64,
    "cross_attention_dim": 768,
    "motion_max_seq_length": 32,
    "use_motion_mid_block": True,
}  # SD 1.5's UNet + motion adapter v1-5-2 (UNetMotionModel's defaults)
ARCHITECTURES = {
    "wan2.1-1.3b": {
        "family": "wan",
        "hub": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        "denoiser": WAN_1_3B,
        "text_params": 5.68e9,
        "text_tokens": 512,
        "text_dim": 4096,
        "vae_params": 1.27e8,
        "latent": (16, 4, 8),
    },  # latent channels, temporal and spatial compression
    "wan2.1-14b": {
        "family": "wan",
        "hub": "Wan-AI/Wan2.1-T2V-14B-Diffusers",
        "denoiser": WAN_14B,
        "text_params": 5.68e9,
        "text_tokens": 512,
        "text_dim": 4096,
        "vae_params": 1.27e8,
        "latent": (16, 4, 8),
    },
    "animatediff-v1-5-2": {
        "family": "animatediff",
        "hub": "guoyww/animatediff-motion-adapter-v1-5-2",
        "denoiser": ANIMATEDIFF,
        "text_params": 1.23e8,
        "text_tokens": 77,
        "text_dim": 768,
        "vae_params": 8.37e7,
        "latent": (4, 1, 8),
    },
}
BY_HUB = {a["hub"]: name for name, a in ARCHITECTURES.items()}
