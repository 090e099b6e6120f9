"""flowcert: certified network sizes, stability bounds and time grids for flow distillation.

The public API (one function per command of the ``flowcert`` CLI)::

    import flowcert
    mix = flowcert.load_mixture("ring8")
    L = flowcert.lipschitz(mix, [1e-3, 1e-2, 0.1], bound="sharp")
    g = flowcert.grid(mix, steps=8, units=("t", "sigma"))
    ex = flowcert.export(g["t"], "diffusers-euler")

Layers import downward only: ``numcore`` (mixture model, kernels, checks, I/O) <- ``bounds``
(sympy formulas, bounds, certificates, grids and exports) <- ``distill`` (torch) <- ``api``
<- ``cli``.
"""

from importlib.metadata import PackageNotFoundError, version

if __name__ == "flowcert":  # pytest also imports this file, as a bare module or under the folder's name: skip it there
    from .api import (
        InputError,
        amplification,
        certify,
        describe,
        export,
        export_grid,
        fit,
        grid,
        lipschitz,
        lipschitz_report,
        load_mixture,
        load_model,
        model_export_grid,
        model_grid,
        model_lipschitz,
        model_solvers,
        optimise_grid,
        solvers,
        stability,
        torch_model,
        train_example,
        validate,
    )

try:
    __version__ = version("flowcert")
except PackageNotFoundError:  # pragma: no cover - running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["load_mixture", "describe", "amplification", "lipschitz", "lipschitz_report", "stability", "grid",
           "export", "export_grid", "optimise_grid", "certify", "solvers", "validate", "load_model", "torch_model",
           "model_lipschitz", "model_grid", "model_export_grid", "model_solvers", "fit", "train_example", "InputError", "__version__"]
