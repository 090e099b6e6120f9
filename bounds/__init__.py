"""Explicit bounds derived with sympy: Lipschitz bounds L(t) of the probability-flow
velocity and certified network sizes.  The numeric functions are generated from the
sympy expressions (see :mod:`bounds.codegen`)."""
