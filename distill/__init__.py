"""Residual-student distillation in torch: the empirical side of flowcert (``pip install "flowcert[torch]"``).

* :mod:`.teacher`    exact mixture score and PF-ODE flow maps Phi_{t->s} (RK4 in log sigma_VE), Jacobians
* :mod:`.students`   residual blocks x <- x + f_i(x) with batched parameters, segment-wise training
* :mod:`.measure`    relative MSE, local errors, fan bound, amplification, Lipschitz constants (with intervals)
* :mod:`.config`     the validated configuration of a run and its presets
* :mod:`.executors`  in-process, process-pool and Ray execution of independent jobs
* :mod:`.validation` phases, jobs, atomic checkpoints and resume;  :mod:`.runfiles` its files
* :mod:`.report`     results.json, summary table, plots
* :mod:`.solver_study`  which grid suits which solver, and the league over many mixtures (needs no torch)
* :mod:`.diffusers_sampling`  diffusers' own schedulers on the exact denoiser
* :mod:`.torch_network`  a certified network as a torch module

Importing this package does not import torch; its modules do.
"""
