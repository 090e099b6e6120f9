"""Grids measured against a teacher, for a mixture and a trained model alike: every grid kind, a solver's optimal
grid, the export that wins for a sampler, the solver study and the league.

* :mod:`.targets`       what a study runs on (a mixture or a model behind one ``Target`` interface), its teacher
  and its training and test batches (the ``Teacher`` and ``Batches`` protocols)
* :mod:`.timegrid`      a grid of any kind for a target, in every unit, and its export for a sampler
* :mod:`.optimal`       a solver's optimal grid against the target's teacher, and the export that wins for a preset
* :mod:`.gits`          the GITS-style teacher search over a teacher's nodes
* :mod:`.solver_study`  which grid suits which solver (one loop for both targets), and the league over mixtures
"""
