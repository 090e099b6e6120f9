"""Residual-student distillation in torch: the empirical side of flowcert (``pip install "flowcert[torch]"``).

* :mod:`.teacher`    exact PF-ODE flow maps Phi_{t->s} (RK4 in log sigma_VE), Jacobians
* :mod:`.students`   residual blocks x <- x + f_i(x) with batched parameters, segment-wise training
* :mod:`.measure`    relative MSE, local errors, fan bound, amplification, Lipschitz constants (with intervals)
* :mod:`.config`     the validated configuration of a run and its presets
* :mod:`.executors`  in-process, process-pool and Ray execution of independent jobs
* :mod:`.validation` phases, jobs, atomic checkpoints and resume;  :mod:`.runfiles` its files
* :mod:`.report`     results.json, summary table, plots

Importing this package does not import torch; its modules do.
"""
