"""The digits-flow example: a class-conditional flow-matching ``UNet2DModel`` on scikit-learn's 8 x 8 digits.

* :mod:`.spec`        the example as data for the shared trainer (:mod:`flowcert.examples.trainer`) and the
  digits classifier that scores samples; ``assets/`` holds the trained pipeline folder, its data split and
  the classifier (package data, loaded as ``--model digits-flow``)
* :mod:`.pipeline`    ``DigitsFlowPipeline``, the diffusers pipeline class the folder is saved as (sampling with
  its own FlowMatch scheduler and classifier-free guidance)
* :mod:`.classifier`  the classifier's numpy forward pass and its training (scikit-learn, weights as ``.npz``)
"""
