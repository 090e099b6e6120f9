"""What the theory gives, derived with sympy: Lipschitz bounds L(t) and Lambda, certified network
sizes, and the grids and sampler exports built on them.

* :mod:`.formulas`, :mod:`.sizes`, :mod:`.sizes_time`  the sympy expressions;
  :mod:`.codegen` turns them into :mod:`._generated` (numpy, committed, checked by a test)
* :mod:`.lipschitz`, :mod:`.stability`  L(t) for a mixture; named rates and their Lambda
* :mod:`.certificate`, :mod:`.certificate_time`, :mod:`.verification`, :mod:`.size_sweep`,
  :mod:`.size_text`, :mod:`.certify`  certificates, their measured check, size tables, one report
* :mod:`.timegrid`, :mod:`.presets`  a grid for a mixture; what each external sampler takes
* :mod:`.optimal`   a solver's optimal grid on a mixture, and the export that wins for a preset
* :mod:`.plots`  L(t) and certified sizes as pictures
"""
