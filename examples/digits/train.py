"""A small diffusers ``UNet2DModel`` trained on scikit-learn's handwritten digits: a real trained model
that runs on a laptop CPU.

Data: the 1797 8 x 8 images of ``sklearn.datasets.load_digits`` (shipped inside scikit-learn, no
download), grey levels 0..16 scaled to [-1, 1] (x = v / 8 - 1), split once by a seeded permutation
into 1437 training and 360 held-out images (written beside the model as ``data/train.npy`` and
``data/test.npy``, shape (n, 64), float32).

Model: ``diffusers.UNet2DModel`` (two resolutions 8 x 8 and 4 x 4, 32 channels, no attention,
236k parameters) trained as a DDPM epsilon predictor on the linear beta schedule
(``DDPMScheduler`` defaults, 1000 steps) with continuous timesteps: n ~ U[0, 999] and
log alphabar interpolated linearly between integer steps, the same map flowcert uses to evaluate
the network at any VE sigma.  Adam with warm-up and cosine decay, gradient clipping, an
exponential moving average of the weights (the EMA weights are the saved model).

The example is data (:data:`DIGITS`) for the one trainer of every example (:mod:`flowcert.examples.trainer`):
a resumable run folder, saved with ``save_pretrained`` as a ``DDPMPipeline`` folder (``model_index.json``,
``unet/``, ``scheduler/``).
"""

from __future__ import annotations

from ...numcore.io import no_progress
from ..trainer import BASE_DEFAULTS, Example, digits_split  # noqa: F401  (digits_split: the shared data split)

TRAIN_DEFAULTS = dict(BASE_DEFAULTS)
UNET_CONFIG = dict(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(32, 32),
                   down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                   layers_per_block=1, norm_num_groups=8, time_embedding_dim=64, add_attention=False)

DIGITS = Example(
    name="digits", model_config=UNET_CONFIG, objective="ddpm-epsilon", pipeline="DDPMPipeline",
    scheduler=("DDPMScheduler", dict(num_train_timesteps=1000, beta_schedule="linear", prediction_type="epsilon")),
    defaults=TRAIN_DEFAULTS, about="DDPM epsilon predictor, linear betas")


def log_alphabar(scheduler):
    """log alphabar_n for n = 0..N-1 of a diffusers scheduler, float64."""
    import torch

    return torch.log(scheduler.alphas_cumprod.double()).numpy()


def train(example: str, out: str, *, progress=no_progress, threads: int | None = None, **options) -> dict:
    """The shared trainer (:func:`flowcert.examples.trainer.train`) for ``digits``."""
    from ..trainer import train as train_

    return train_(example, out, progress=progress, threads=threads, **options)
