"""``DigitsFlowPipeline``: the diffusers pipeline of the digits-flow example (a class-conditional ``UNet2DModel``
and a ``FlowMatchEulerDiscreteScheduler``), as ``save_pretrained`` writes it and as a user samples it.

Sampling is the scheduler's own loop (as diffusers' SD3/Flux pipelines run it): ``set_timesteps`` (or custom
``sigmas``, which the scheduler shifts as it would any sigmas), the network fed the scheduler's timestep
(1000 s), classifier-free guidance in diffusers' convention v = v_u + W (v_c - v_u) with the unconditional branch
the null class, and ``scheduler.step``.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import DiffusionPipeline


class DigitsFlowPipeline(DiffusionPipeline):
    """A class-conditional flow-matching pipeline on 8 x 8 digits (labels 0..9, null class 10)."""

    model_cpu_offload_seq = "unet"

    def __init__(self, unet, scheduler):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    @torch.no_grad()
    def __call__(self, class_labels, guidance_scale: float = 1.0, num_inference_steps: int = 28, sigmas=None,
                 null_class_label: int = 10, generator: torch.Generator | None = None, latents=None):
        """Samples, one per class label, as a float32 array (n, 8, 8) in [-1, 1] (not clipped)."""
        labels = torch.as_tensor(np.atleast_1d(class_labels), dtype=torch.long)
        n = labels.shape[0]
        shape = (n, self.unet.config.in_channels, self.unet.config.sample_size, self.unet.config.sample_size)
        x = torch.randn(shape, generator=generator) if latents is None else torch.as_tensor(latents).float()
        if sigmas is not None:
            self.scheduler.set_timesteps(sigmas=list(sigmas))
        else:
            self.scheduler.set_timesteps(num_inference_steps)
        null = torch.full_like(labels, null_class_label)
        for t in self.scheduler.timesteps:
            tt = t.expand(n).float()
            if guidance_scale == 1.0:
                v = self.unet(x, tt, class_labels=labels).sample
            else:
                both = self.unet(torch.cat([x, x]), torch.cat([tt, tt]), class_labels=torch.cat([labels, null])).sample
                v_c, v_u = both.chunk(2)
                v = v_u + guidance_scale * (v_c - v_u)
            x = self.scheduler.step(v, t, x).prev_sample
        return x[:, 0].numpy()
