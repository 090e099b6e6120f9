"""What the theory gives, derived with sympy: Lipschitz bounds L(t) and Lambda, amplification and certified
network sizes.

* :mod:`.formulas`, :mod:`.sizes`, :mod:`.sizes_time`  the sympy expressions;
  :mod:`.codegen` turns them into :mod:`._generated` (numpy, committed, checked by a test)
* :mod:`.lipschitz`, :mod:`.stability`  L(t) for a mixture; named rates and their Lambda
* :mod:`.certificate`, :mod:`.certificate_time`, :mod:`.verification`, :mod:`.size_sweep`,
  :mod:`.size_text`, :mod:`.certify`  certificates, their measured check, size tables, one report
* :mod:`.amplification`  worst-case, certified, measured and predicted amplification of the flow map
* :mod:`.plots`  L(t) and certified sizes as pictures
"""
