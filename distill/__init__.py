"""Residual-student distillation in torch: the empirical side of flowcert.

Modules, one concept each:

* :mod:`distill.teacher`   exact mixture score and PF-ODE flow maps Phi_{t->s} (RK4 in log sigma_VE), Jacobians
* :mod:`distill.students`  residual blocks x <- x + f_i(x) with batched parameters, segment-wise training
* :mod:`distill.measure`   relative MSE, local errors, fan bound, amplification, Lipschitz constants (with intervals)
* :mod:`distill.config`    the validated configuration of a run and its presets
* :mod:`distill.executors` in-process, process-pool and Ray execution of independent jobs
* :mod:`distill.sweep`     phases, jobs, atomic checkpoints and resume
* :mod:`distill.report`    results.json, summary table, plots

torch is imported by these modules; nothing outside ``distill`` imports them at start-up.
"""
