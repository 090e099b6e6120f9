"""The configuration of a validation run: one place that checks and converts every option.

Everything that changes a number in ``results.json`` lives in :class:`ValidateConfig`; how the
jobs are executed (executor, workers, Ray address) does not change any number and is kept apart.
Presets fill in the options the user did not give.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..numcore import grids
from ..numcore.checks import (TEACHER_DELTA_MIN, InputError, choice, integer, option, real, split_list, steps_list,
                              time_window)
from ..numcore.solvers import NAMES, check as check_solver

GRIDS = grids.GRID_KINDS + ("empirical",)  # empirical: the balanced grid on the data-aware rate
SOLVERS = NAMES  # the registry's solvers (numcore.solvers)
BALANCE_RATES = ("tri", "sharp", "onesided", "empirical")
DEVICES = ("auto", "cpu", "cuda")
EXECUTORS = ("local", "process", "ray")
BUDGETS = ("per-block", "total")
DTYPES = ("float32", "float64")
MAX_STEPS = 256

PRESETS = {
    # the ring8 comparison a laptop CPU finishes in a few minutes
    "quick": dict(steps=[1, 4, 8], grids=["uniform", "balanced"], seeds=2, n_train=4096, n_test=2048,
                  iters=1200, width=48, depth=2, batch=512, amp_times=6, amp_samples=256, lip_samples=128),
    # the default sweep: the defaults of ValidateConfig
    "full": dict(),
}


@dataclass
class ValidateConfig:
    """Every option that determines the results of ``flowcert validate``.

    Sizes: ``n_train`` teacher trajectories per seed for training, ``n_test`` fresh ones for the
    measurements; ``iters`` Adam steps per block group (batch ``batch``, peak rate ``lr``);
    blocks are MLPs with ``depth`` hidden layers of ``width`` (``budget = per-block``) or the
    widest blocks whose N copies fit in ``total_params`` (``budget = total``; 0 means
    N_max * params(width, depth)).  ``group`` blocks train together in one batched kernel and
    are checkpointed together.
    """

    mixtures: list = field(default_factory=list)  # spec names/paths as given
    specs: list = field(default_factory=list)  # the parsed mixture specs (resume needs no files)
    steps: list = field(default_factory=lambda: [1, 2, 4, 8, 16])
    grids: list = field(default_factory=lambda: ["uniform", "balanced", "edm", "logsnr"])
    bound: str = "tri"
    solver: str = "euler"  # the solver whose optimal grid the grid `optimal` is
    seeds: int = 3
    seed: int = 0
    delta: float = 1e-3
    T: float = 5.0
    n_train: int = 16384
    n_test: int = 8192
    iters: int = 3000
    batch: int = 1024
    lr: float = 3e-3
    width: int = 64
    depth: int = 2
    budget: str = "per-block"
    total_params: int = 0
    group: int = 8
    finetune: int = 0
    finetune_lr: float = 3e-4
    dtype: str = "float32"
    teacher_step: float = 0.01
    device: str = "auto"
    threads: int = 1
    amp_times: int = 10
    amp_samples: int = 512
    lip_samples: int = 256
    empirical_samples: int = 2048
    preset: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ValidateConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def seed_list(self) -> list[int]:
        return [self.seed + i for i in range(self.seeds)]

    def block_total(self) -> int:
        """The total parameter budget used when ``budget == 'total'``."""
        from .students import param_count

        d = max(len(s["means"][0]) for s in self.specs) if self.specs else 1
        return self.total_params or max(self.steps) * param_count(d, self.width, self.depth)


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; 'cuda' without a GPU is an input error."""
    import torch

    choice("device", device, DEVICES)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("`device` = 'cuda': no CUDA GPU is visible to torch; use `device` cpu or auto")
    return device


def build_config(mixtures, specs, *, preset=None, **options) -> ValidateConfig:
    """Check every option and return the config.  ``options`` left as None take the preset's value
    (``full`` when no preset is named), then the dataclass default."""
    if preset is not None:
        choice("preset", preset, tuple(PRESETS))
    base = dict(PRESETS[preset or "full"])
    given = {k: v for k, v in options.items() if v is not None}
    merged = {**base, **given}
    cfg = ValidateConfig(mixtures=list(mixtures), specs=list(specs), preset=preset or "")
    for k, v in merged.items():
        if not hasattr(cfg, k):
            raise TypeError(f"unknown option {k}")
        setattr(cfg, k, v)
    return check_config(cfg)


def _memory(cfg: ValidateConfig) -> None:
    """Refuse, before any work, a run whose largest arrays exceed the memory budget (estimates):
    the teacher trajectories of every seed at the union of all grid nodes, with the per-job slices
    and the per-component score terms; and the Jacobians (n, d, d) of the amplification and
    Lipschitz measurements with their RK4 stages."""
    from ..numcore.checks import fits_memory, memory_budget

    if not cfg.specs:
        return
    d = max(len(s["means"][0]) for s in cfg.specs)
    K = max(len(s["means"]) for s in cfg.specs)
    nodes = 1 + len(cfg.grids) * sum(cfg.steps)
    per_point = 8.0 * d * (nodes + 3 * (max(cfg.steps) + 1) + 5 * K)
    need = (cfg.n_train + cfg.n_test) * per_point
    fits_memory("n_train", cfg.n_train, need, f"the teacher trajectories ({cfg.n_train} + {cfg.n_test} samples at up "
                f"to {nodes} times, d = {d})", largest=max(0, int(memory_budget() / per_point) - cfg.n_test))
    rotated = any("cov" in s for s in cfg.specs)  # a basis per component: (n, K, d, d) products
    per_jac = 8.0 * 12 * d * d * (1 + (K if rotated else 0))
    n_jac = max(cfg.amp_samples, cfg.lip_samples)
    fits_memory("amp_samples", n_jac, n_jac * per_jac, f"the Jacobians (n, d, d) of the amplification at d = {d}",
                largest=int(memory_budget() / per_jac))


def check_config(cfg: ValidateConfig) -> ValidateConfig:
    """Check and convert every field of ``cfg`` in place (the options of a new run, and the
    configuration a resumed run reads back); returns it."""
    cfg.steps = steps_list("steps", cfg.steps, MAX_STEPS)
    cfg.grids = split_list("grids", cfg.grids, GRIDS)
    cfg.bound = choice("bound", cfg.bound, BALANCE_RATES)
    cfg.solver = check_solver(cfg.solver).name
    cfg.seeds = integer("seeds", cfg.seeds, low=1, high=1000)
    cfg.seed = option("seed", cfg.seed)
    cfg.delta, cfg.T = time_window(cfg.delta, cfg.T, delta_min=TEACHER_DELTA_MIN)
    cfg.n_train = integer("n_train", cfg.n_train, low=16, high=10**8)
    cfg.n_test = integer("n_test", cfg.n_test, low=16, high=10**8)
    cfg.iters = integer("iters", cfg.iters, low=1, high=10**8)
    cfg.batch = integer("batch", cfg.batch, low=1, high=10**8)
    cfg.lr = real("lr", cfg.lr, low=0.0, low_open=True, high=10.0)
    cfg.width = integer("width", cfg.width, low=1, high=65536)
    cfg.depth = integer("depth", cfg.depth, low=1, high=64)
    cfg.budget = choice("budget", cfg.budget, BUDGETS)
    cfg.total_params = integer("total_params", cfg.total_params, low=0, high=10**12)
    cfg.group = integer("group", cfg.group, low=1, high=4096)
    cfg.finetune = integer("finetune", cfg.finetune, low=0, high=10**8)
    cfg.finetune_lr = real("finetune_lr", cfg.finetune_lr, low=0.0, low_open=True, high=10.0)
    cfg.dtype = choice("dtype", cfg.dtype, DTYPES)
    cfg.teacher_step = real("teacher_step", cfg.teacher_step, low=1e-5, high=0.5)
    cfg.device = choice("device", cfg.device, DEVICES)
    cfg.threads = integer("threads", cfg.threads, low=1, high=1024)
    cfg.amp_times = integer("amp_times", cfg.amp_times, low=1, high=1000)
    cfg.amp_samples = integer("amp_samples", cfg.amp_samples, low=2, high=10**7)
    cfg.lip_samples = integer("lip_samples", cfg.lip_samples, low=1, high=10**7)
    cfg.empirical_samples = integer("empirical_samples", cfg.empirical_samples, low=16, high=10**7)
    if "optimal" in cfg.grids and max(cfg.steps) > 64:
        raise InputError(f"`steps` = {max(cfg.steps)}: expected at most 64 with `grids` optimal (the grid search's "
                         "limit)")
    if cfg.lip_samples > cfg.n_test:
        cfg.lip_samples = cfg.n_test
    _memory(cfg)
    if cfg.budget == "total":
        from .students import param_count

        d = max(len(s["means"][0]) for s in cfg.specs)
        need = max(cfg.steps) * param_count(d, 1, cfg.depth)
        if cfg.block_total() < need:
            raise InputError(f"`total_params` = {cfg.total_params}: expected at least {need} "
                             f"(N = {max(cfg.steps)} blocks of width 1)")
    return cfg
