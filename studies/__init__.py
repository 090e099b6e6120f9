"""Grids measured against a teacher: the optimal grid of a solver, the solver study, the league, and the same
for a trained model.

* :mod:`.timegrid`     a grid for a mixture: kind, rate, nodes in every unit
* :mod:`.optimal`      a solver's optimal grid (training and test batches of teacher trajectories) and the export
  that wins for a preset
* :mod:`.solvers`      which grid suits which solver, and the league over many mixtures (needs no torch)
* :mod:`.model_grids`  Lipschitz tables, grids, the optimal grid and the solver study of a trained model
"""
