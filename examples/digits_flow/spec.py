"""The digits-flow example: a class-conditional flow-matching ``UNet2DModel`` on scikit-learn's 8 x 8 digits.

Data: the digits example's split (:func:`flowcert.examples.trainer.digits_split`: 1437 training and 360
held-out images, x = v / 8 - 1) with their labels (``data/*_labels.npy``).

Model: ``diffusers.UNet2DModel`` with the digits UNet's layout (8 x 8 and 4 x 4, 32 channels, no attention)
and class embeddings (``num_class_embeds = 11``: the digits 0..9 and the null class 10, the unconditional
branch of classifier-free guidance; a label is replaced by the null class with probability
``label_dropout``, default 0.1).  Objective ``flow-v`` (:mod:`flowcert.examples.trainer`): s ~ U[0, 1],
x_s = (1 - s) x_0 + s eps, the network is fed timestep = 1000 s and predicts v = eps - x_0, which is what a
``FlowMatchEulerDiscreteScheduler`` (shift 1, 1000 training timesteps) samples.

Saved with ``save_pretrained`` as a ``DigitsFlowPipeline`` folder (:mod:`.pipeline`): ``unet/``,
``scheduler/``, ``model_index.json`` and the sidecar ``unet/flowcert.json`` = ``{"null_class": 10}`` beside the
UNet's config (the null class, which diffusers' config has no field for, as flowcert's loaders read it); beside
it ``classifier.npz``, a digits classifier (:mod:`.classifier`) trained on the same real training digits,
which scores the class of generated samples.
"""

from __future__ import annotations

import os

from ...numcore.io import write_atomic
from ..digits.train import UNET_CONFIG as DIGITS_UNET
from ..trainer import BASE_DEFAULTS, Example

CLASSES = 10
NULL_CLASS = CLASSES
TRAIN_DEFAULTS = dict(BASE_DEFAULTS, steps=3000, label_dropout=0.1)
UNET_CONFIG = dict(DIGITS_UNET, num_class_embeds=CLASSES + 1)
SCHEDULER = ("FlowMatchEulerDiscreteScheduler", dict(num_train_timesteps=1000, shift=1.0))
SIDECARS = {"unet/flowcert.json": {"null_class": NULL_CLASS}}
CLASSIFIER = "classifier.npz"


def _pipeline_class():
    from .pipeline import DigitsFlowPipeline

    return DigitsFlowPipeline


def write_classifier(out, train_x, train_y, test_x, test_y, cfg) -> list[str]:
    """Fit the digits classifier on the real training digits and write ``classifier.npz`` into ``out``."""
    from . import classifier

    arrays = classifier.fit(train_x, train_y, seed=cfg["seed"])
    write_atomic(os.path.join(out, CLASSIFIER), classifier.npz_bytes(arrays), "out")
    return [CLASSIFIER]


DIGITS_FLOW = Example(
    name="digits-flow", model_config=UNET_CONFIG, objective="flow-v", pipeline=_pipeline_class,
    scheduler=SCHEDULER, defaults=TRAIN_DEFAULTS, classes=CLASSES, sidecars=SIDECARS, extras=write_classifier,
    about="class-conditional flow matching (v = eps - x_0), null class 10")
