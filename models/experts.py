"""Wan 2.2 A14B's denoiser: two transformer experts switched by timestep, as one module.

`WanPipeline` calls `transformer` (the high-noise expert) while t >= boundary_ratio · T and
`transformer_2` (the low-noise expert) below. Training draws t per sample, so one batch may reach
both: `WanExperts.forward` splits it by expert and reassembles the outputs in the batch's order.
Being one module, DDP / FSDP, LoRA (peft), the replay snapshots and the EMA see both experts; its
state-dict keys are the pipeline's component names (`transformer.…`, `transformer_2.…`).
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin, WanTransformer3DModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.modeling_outputs import Transformer2DModelOutput

EXPERTS = ("transformer", "transformer_2")  # WanPipeline's high- and low-noise experts, in that order


class WanExperts(ModelMixin, ConfigMixin):
    """`transformer` for t >= `boundary` = boundary_ratio · num_train_timesteps, `transformer_2` below.

    Both experts share one architecture (`expert`: a `WanTransformer3DModel` config), as in A14B; built
    from the config alone they start random (`from_config`, as for any diffusers model).
    """

    _supports_gradient_checkpointing = True
    ignore_for_config = list(EXPERTS)

    @register_to_config
    def __init__(
        self,
        expert: dict,
        boundary_ratio: float,
        num_train_timesteps: int = 1000,
        transformer: WanTransformer3DModel | None = None,
        transformer_2: WanTransformer3DModel | None = None,
    ):
        super().__init__()
        self.transformer = transformer or WanTransformer3DModel.from_config(expert)
        self.transformer_2 = transformer_2 or WanTransformer3DModel.from_config(expert)

    @property
    def boundary(self) -> float:
        """The first timestep of the high-noise expert (875 for A14B)."""
        return self.config.boundary_ratio * self.config.num_train_timesteps

    def forward(
        self, hidden_states: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor, **kwargs
    ) -> Transformer2DModelOutput:
        """Each sample through its expert (`WanTransformer3DModel.forward`'s arguments, batch-first); an expert
        that gets no sample is not called."""
        high = timestep >= self.boundary  # [b]
        rows = [high.nonzero()[:, 0], (~high).nonzero()[:, 0]]  # sample indices per expert, in EXPERTS' order
        outs = [
            expert(hidden_states[r], timestep[r], encoder_hidden_states[r], **kwargs).sample
            for expert, r in zip((self.transformer, self.transformer_2), rows, strict=True)
            if len(r)
        ]
        order = torch.cat(rows).argsort()  # back from expert-grouped to batch order
        return Transformer2DModelOutput(sample=torch.cat(outs)[order])
