"""flowcert's numeric core: the mixture model, its OU marginals, compiled kernels,
Monte-Carlo errors, stability integrals, time units and grids.

Importing this package is cheap; numba is imported when a kernel first runs.
"""
