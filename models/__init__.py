"""Trained networks and the exact mixture behind one denoiser interface (torch; ``pip install "flowcert[torch]"``).

* :mod:`.denoiser`  the interface D(y, sigma, cond) every model implements, and a network's parametrisation
  (scaling, prediction, noise map) as registries
* :mod:`.exact`     the exact Gaussian mixture in torch (score, Hessian-vector products) and as a denoiser: the oracle
* :mod:`.loaders`   where models come from: diffusers folders, ``FILE.py:NAME``, the shipped examples, mixtures
* :mod:`.flow`      a model's own probability-flow ODE: the many-step teacher and few-step solvers on it
* :mod:`.jacobian`  ||J||_op of a model by Lanczos with ``torch.func`` products, and its p_t table

Importing this package does not import torch; its modules do.
"""
