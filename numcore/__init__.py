"""The base layer: the mixture model and everything that evaluates it, with no knowledge of the layers above.

* :mod:`.checks`    the one input checker (:class:`~.checks.InputError`: one line naming the parameter)
* :mod:`.io`        the one atomic writer, strict JSON, figures, progress bars
* :mod:`.mixture`   specs, built-ins, the spectral form of the covariances
* :mod:`.kernels`   numba kernels (log-density, score, Hessian, Jacobian spectrum, L^p sums)
* :mod:`.marginal`  p_t: sampling, score, velocity Jacobian, denoiser
* :mod:`.empirical` brute-force sup and mean of ||J||_op;  :mod:`.lp` Monte-Carlo L^p errors
* :mod:`.integral`  Lambda(t) by adaptive Gauss-Kronrod in log t, and its inverse
* :mod:`.units`, :mod:`.grids`, :mod:`.distances`  time units, grid kinds, error measures
* :mod:`.solvers`   the solver registry: each solver as a scheme that writes its affine program for a grid
* :mod:`.samplers`  a solver's program run with any denoiser, compiled with the exact one, and its gradient
* :mod:`.flowmap`   the exact probability-flow map (RK4 in log sigma_VE), without torch
* :mod:`.gridsearch` the search for the grid that minimises a solver's error
* :mod:`.network`, :mod:`.gadgets`, :mod:`.scorenet`, :mod:`.scorenet_time`, :mod:`.timecoef`
  framework-free ReLU-ReQU networks and the constructive score networks

Importing this package is cheap; numba is imported when a kernel first runs.
"""
