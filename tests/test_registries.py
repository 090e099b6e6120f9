"""One registry per concept and one domain per option: every list of grid kinds reads the grid-kind registry,
every bound of an option lives in the option table, the command line's defaults and help defaults come from it,
and a request no command can serve is refused, never skipped."""

from __future__ import annotations

import inspect

import pytest

import flowcert
from flowcert import api
from flowcert.cli import main
from flowcert.numcore import grids
from flowcert.numcore.checks import OPTIONS, InputError


def test_grid_kinds_come_from_one_registry():
    from flowcert.distill.config import GRIDS
    from flowcert.studies.solver_study import labels
    from flowcert.studies.targets import MixtureTarget

    assert set(grids.GRID_KINDS) <= set(grids.KINDS)
    # validate's grids: every grid kind, the empirical rate's balanced grid, and for models the balanced grid of the
    # fitted Gaussian-mixture surrogate (a validate grid, not a kind of `grid`)
    assert set(GRIDS) - {"empirical", "surrogate"} == set(grids.GRID_KINDS)
    grid_cmd = main.get_command(None, "grid")
    kind = next(p for p in grid_cmd.params if p.name == "kind")
    assert tuple(kind.type.choices) == grids.GRID_KINDS
    # the solver study's grids: one balanced grid per rate, every closed form, the optimal grid
    study = labels(MixtureTarget(flowcert.load_mixture("line2")))
    assert [g for g in study if not g.startswith("balanced-")] == [
        k for k in grids.KINDS if grids.KINDS[k].needs in (grids.CLOSED, grids.SOLVER)]
    for name, kind in grids.KINDS.items():
        if kind.needs == grids.CLOSED:
            t = grids.build(name, 5, 1e-3, 5.0)
            assert t[0] == 5.0 and t[-1] == 1e-3 and (t[1:] < t[:-1]).all()
        else:
            with pytest.raises(ValueError):
                grids.build(name, 5, 1e-3, 5.0)


def test_an_unknown_kind_names_every_registered_one():
    with pytest.raises(InputError, match=", ".join(grids.GRID_KINDS)):
        flowcert.grid("line2", 4, kind="nope")


def _cli_options(name):
    return {p.name: p for p in main.get_command(None, name).params}


@pytest.mark.parametrize("command", ["mixture", "lipschitz", "grid", "certify", "solvers"])
def test_numeric_options_take_type_and_help_default_from_the_table(command):
    from flowcert.cli import OPTIONS as TABLE

    fn = main.get_command(None, command).callback
    keys = fn.__wrapped__.__dict__.get("option_keys", {})
    assert keys, command
    params = _cli_options(command)
    for dest, key in keys.items():
        d = TABLE[key]
        p = params[dest]
        assert p.default is None  # the table's default is filled in at run time (the model's with --model)
        assert p.type.name == ("integer" if d.kind == "integer" else "float"), (command, dest)
        if d.default is not None:
            assert d.default_text() in " ".join(p.help.split()), (command, dest)


@pytest.mark.parametrize("fn, mapping, model", [
    (api.grid, {"steps": "steps", "samples": "samples", "seed": "seed", "train_samples": "train_samples",
                "test_samples": "test_samples", "effort": "effort"}, False),
    (api.export_grid, {"samples": "samples", "seed": "seed", "train_samples": "train_samples",
                       "test_samples": "test_samples", "effort": "effort"}, False),
    (api.solvers, {"samples": "solvers.samples", "seed": "seed", "train_samples": "train_samples",
                   "effort": "effort", "random": "random"}, False),
    (api.model_grid, {"steps": "steps", "samples": "samples", "seed": "seed", "train_samples": "train_samples",
                      "test_samples": "test_samples", "effort": "effort", "teacher_steps": "grid.teacher_steps",
                      "points": "points"}, True),
    (api.model_export_grid, {"samples": "samples", "seed": "seed", "train_samples": "train_samples",
                             "test_samples": "test_samples", "effort": "effort",
                             "teacher_steps": "grid.teacher_steps"}, True),
    (api.model_solvers, {"samples": "solvers.samples", "seed": "seed", "train_samples": "train_samples",
                         "effort": "effort", "teacher_steps": "teacher_steps"}, True),
    (api.model_lipschitz, {"points": "points", "samples": "jacobian_samples", "seed": "seed",
                           "teacher_steps": "teacher_steps"}, True),
    (api.lipschitz_report, {"points": "points", "empirical": "empirical", "seed": "seed",
                            "ball_mass": "ball_mass"}, False),
])
def test_the_api_defaults_are_the_tables(fn, mapping, model):
    sig = inspect.signature(fn).parameters
    for arg, key in mapping.items():
        assert sig[arg].default == OPTIONS[key].default_for(model), (fn.__name__, arg)


@pytest.mark.parametrize("call", [
    lambda: flowcert.describe("line2", amp_samples=2, seed=2**32),
    lambda: flowcert.amplification("line2", samples=2, seed=2**32),
    lambda: flowcert.grid("line2", 4, kind="balanced", bound="empirical", seed=2**32),
    lambda: flowcert.solvers("line2", [2], samples=16, seed=2**32),
    lambda: flowcert.train_example("digits", "/nonexistent-flowcert", seed=2**32),
])
def test_one_seed_domain_everywhere(call):
    with pytest.raises(InputError, match=r"`seed` = 4294967296: expected an integer <= 4294967295"):
        call()


def test_a_model_study_refuses_steps_beyond_the_optimal_grids_limit_instead_of_skipping_them():
    pytest.importorskip("torch")
    high = OPTIONS["solvers.steps"].high
    with pytest.raises(InputError, match=f"`steps` = {high + 1}: expected an integer <= {high}"):
        flowcert.model_solvers("mixture:line2", steps=[2, high + 1], samples=16, train_samples=16)
