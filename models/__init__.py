"""Trained networks and the exact mixture behind one denoiser interface (torch; ``pip install "flowcert[torch]"``).

* :mod:`.model`     a network (diffusers folder, torch callable, mixture) as a denoiser in VE sigma, and its loaders
* :mod:`.mixture`   the exact Gaussian mixture in torch (score, Hessian-vector products): the oracle
* :mod:`.flow`      a model's own probability-flow ODE: the many-step teacher and few-step solvers on it
* :mod:`.jacobian`  ||J||_op of a model by Lanczos with ``torch.func`` products, and its p_t table

Importing this package does not import torch; its modules do.
"""
