"""The configuration of a validation run: one place that checks and converts every option.

Everything that changes a number in ``results.json`` lives in :class:`ValidateConfig`; how the
jobs are executed (executor, workers, Ray address) does not change any number and is kept apart.
Presets fill in the options the user did not give.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from ..numcore import grids
from ..numcore.checks import (TEACHER_DELTA_MIN, InputError, choice, integer, option, real, split_list, steps_list,
                              time_window)
from ..numcore.solvers import NAMES, check as check_solver

# empirical: the balanced grid on the data-aware rate; surrogate (models): the balanced grid of a Gaussian mixture
# fitted to the model's training data
GRIDS = grids.GRID_KINDS + ("empirical", "surrogate")
SOLVERS = NAMES  # the registry's solvers (numcore.solvers)
BALANCE_RATES = ("tri", "sharp", "onesided", "empirical")
SURROGATE_RATES = ("tri", "sharp", "onesided", "empirical")
DEVICES = ("auto", "cpu", "cuda")
EXECUTORS = ("local", "process", "ray")
BUDGETS = ("per-block", "total")
BLOCKS = ("mlp", "conv")
DTYPES = ("float32", "float64")
DISTANCES = ("auto", "sw2", "none")
MAX_STEPS = 256
# the keyword arguments of flowcert.load_model a model run may record (model_options); the conditioning and
# guidance options of the models issue (class_label, guidance) join here when its loaders land
MODEL_OPTIONS = ("prediction", "class_label", "guidance")  # load_model keywords a model run records (JSON values)

PRESETS = {
    # the ring8 comparison a laptop CPU finishes in a few minutes
    "quick": dict(steps=[1, 4, 8], grids=["uniform", "balanced"], seeds=2, n_train=4096, n_test=2048,
                  iters=1200, width=48, depth=2, batch=512, amp_times=6, amp_samples=256, lip_samples=128),
    # the default sweep: the defaults of ValidateConfig
    "full": dict(),
}
# the presets of a trained model (validate --model M): what a model costs is its network's evaluations
MODEL_PRESETS = {
    # the balanced grid against uniform on a laptop CPU (the digits UNet: minutes)
    "quick": dict(steps=[1, 4, 8], grids=["uniform", "empirical"], seeds=2, n_train=768, n_test=256,
                  teacher_steps=24, iters=800, width=64, depth=2, batch=256, amp_samples=4, lip_samples=4,
                  local_samples=64, empirical_samples=64, rate_points=12, bound="empirical"),
    # the distillation study of a trained network (the README's digits table): every grid kind
    "full": dict(steps=[1, 2, 4, 8], grids=["uniform", "empirical", "logsnr", "kl-optimal", "edm", "optimal",
                                            "surrogate"],
                 seeds=3, n_train=2048, n_test=512, teacher_steps=48, iters=2000, width=64, depth=2, batch=256,
                 amp_samples=32, lip_samples=32, local_samples=256, empirical_samples=256, rate_points=24,
                 bound="empirical"),
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
    # a trained model (validate --model M): its source as given, load_model's keyword arguments, the sample shape
    model: str = ""
    model_options: dict = field(default_factory=dict)
    shape: list = field(default_factory=list)
    teacher_steps: int = 64  # RK4 steps of the model's own teacher over [delta, T]
    rate_points: int = 40  # times of the model's E||J||_op table (the empirical rate)
    data: str = ""  # training data x_0 (.npy): samples of p_t for the rate, the surrogate's fit
    data_sha256: str = ""
    reference: str = ""  # held-out data x_0 (.npy): the distribution distance
    reference_sha256: str = ""
    # with model_options' class_label: the labels of data / reference (.npy, one integer per sample); only the
    # class's rows are used (the shipped guided model's own labels by default)
    data_labels: str = ""
    data_labels_sha256: str = ""
    reference_labels: str = ""
    reference_labels_sha256: str = ""
    surrogate_bound: str = "empirical"  # the rate the surrogate mixture's balanced grid is uniform in (sharp: K^2 pair
    # constants per time, far too slow for a 32-component mixture in d = 64 on a CPU)
    surrogate_components: int = 32
    # every target
    block: str = "mlp"
    distance: str = "auto"
    local_samples: int = 0  # chain states per segment for the local errors (0: every test trajectory)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ValidateConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def seed_list(self) -> list[int]:
        return [self.seed + i for i in range(self.seeds)]

    @property
    def sample_shape(self) -> tuple:
        """The shape of one sample: the model's, or (d,) of the widest mixture."""
        if self.shape:
            return tuple(int(s) for s in self.shape)
        return (max(len(s["means"][0]) for s in self.specs) if self.specs else 1,)

    @property
    def d(self) -> int:
        return int(math.prod(self.sample_shape))

    def block_total(self) -> int:
        """The total parameter budget used when ``budget == 'total'``."""
        from .students import block_params

        return self.total_params or max(self.steps) * block_params(self.block, self.sample_shape, self.width,
                                                                   self.depth)


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; 'cuda' without a GPU is an input error."""
    import torch

    choice("device", device, DEVICES)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("`device` = 'cuda': no CUDA GPU is visible to torch; use `device` cpu or auto")
    return device


def build_config(mixtures, specs, *, preset=None, model: str = "", **options) -> ValidateConfig:
    """Check every option and return the config.  ``options`` left as None take the preset's value
    (``full`` when no preset is named; a model's presets are ``MODEL_PRESETS``), then the dataclass default."""
    table = MODEL_PRESETS if model else PRESETS
    if preset is not None:
        choice("preset", preset, tuple(table))
    base = dict(table[preset or "full"])
    given = {k: v for k, v in options.items() if v is not None}
    merged = {**base, **given}
    cfg = ValidateConfig(mixtures=list(mixtures), specs=list(specs), preset=preset or "", model=model)
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

    if not cfg.specs and not cfg.shape:
        return
    d = cfg.d
    K = max(len(s["means"]) for s in cfg.specs) if cfg.specs else 1
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
    cfg.block = choice("block", cfg.block, BLOCKS)
    cfg.distance = choice("distance", cfg.distance, DISTANCES)
    cfg.local_samples = integer("local_samples", cfg.local_samples, low=0, high=10**8)
    cfg.teacher_steps = integer("teacher_steps", cfg.teacher_steps, low=1, high=100_000)
    cfg.rate_points = integer("rate_points", cfg.rate_points, low=2, high=1000)
    cfg.surrogate_bound = choice("surrogate_bound", cfg.surrogate_bound, SURROGATE_RATES)
    cfg.surrogate_components = integer("surrogate_components", cfg.surrogate_components, low=1, high=1024)
    _check_target(cfg)
    if cfg.lip_samples > cfg.n_test:
        cfg.lip_samples = cfg.n_test
    if cfg.model and cfg.lip_samples > cfg.amp_samples:
        cfg.lip_samples = cfg.amp_samples  # a model's block Lipschitz constants are taken where the teacher's are
    if cfg.local_samples > cfg.n_test:
        cfg.local_samples = cfg.n_test
    _memory(cfg)
    if cfg.budget == "total":
        from .students import block_params

        need = max(cfg.steps) * block_params(cfg.block, cfg.sample_shape, 1, cfg.depth)
        if cfg.block_total() < need:
            raise InputError(f"`total_params` = {cfg.total_params}: expected at least {need} "
                             f"(N = {max(cfg.steps)} blocks of width 1)")
    return cfg


def _text(name: str, value) -> str:
    if not isinstance(value, str):
        raise InputError(f"`{name}` = {value!r}: expected text")
    return value


def _check_target(cfg: ValidateConfig) -> None:
    """What depends on the target: a mixture run (``specs``) or a model run (``model``), never both; the options
    that only one of them takes; and, for a model, its sample shape, teacher steps, data and block type."""
    from ..numcore.checks import printable

    cfg.model = _text("model", cfg.model)
    for key in ("data", "reference", "data_sha256", "reference_sha256", "data_labels", "reference_labels",
                "data_labels_sha256", "reference_labels_sha256"):
        setattr(cfg, key, _text(key, getattr(cfg, key)))
    if not isinstance(cfg.model_options, dict) or any(k not in MODEL_OPTIONS for k in cfg.model_options):
        raise InputError(f"`model_options` = {printable(repr(cfg.model_options), 80)}: expected a mapping with keys "
                         f"among {', '.join(MODEL_OPTIONS)}")
    if not isinstance(cfg.shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 2**24
                                                  for s in cfg.shape):
        raise InputError(f"`shape` = {printable(repr(cfg.shape), 80)}: expected a list of positive integers")
    if cfg.model:
        if cfg.specs or cfg.mixtures:
            raise InputError("`model` and `specs` together: expected mixture SPECs or one `model`, not both")
        if not cfg.shape:
            raise InputError("`shape` is missing: a model run records its sample shape")
        if cfg.bound != "empirical":
            raise InputError(f"`bound` = {cfg.bound!r}: a trained model has no analytic bound: expected empirical "
                             "(the model's p_t-average of ||J||_op)")
        if max(cfg.steps) > cfg.teacher_steps:
            raise InputError(f"`steps` = {max(cfg.steps)}: expected at most `teacher_steps` = {cfg.teacher_steps} (each "
                             "segment of a student needs at least one step of the model's teacher; raise "
                             "`teacher_steps`)")
        if "surrogate" in cfg.grids and not cfg.data:
            raise InputError("`grids` = 'surrogate': the surrogate mixture is fitted to the model's training data: "
                             "expected `data` FILE.npy")
        if cfg.distance == "sw2" and not cfg.reference:
            raise InputError("`distance` = 'sw2': the distance to held-out data needs them: expected `reference` "
                             "FILE.npy (or `distance` none)")
        for key in ("data", "reference"):
            if getattr(cfg, f"{key}_labels") and not getattr(cfg, key):
                raise InputError(f"`{key}_labels` is given without `{key}`: expected the labels of `{key}`'s samples")
            if getattr(cfg, f"{key}_labels") and cfg.model_options.get("class_label") is None:
                raise InputError(f"`{key}_labels` is given without `class_label`: the labels select one class's "
                                 "samples; expected `class_label` in `model_options`")
    else:
        if cfg.shape:
            raise InputError("`shape` is given without `model`: a mixture's samples are vectors")
        for key in ("data", "reference"):
            if getattr(cfg, key):
                raise InputError(f"`{key}` is given without `model`: a mixture's teacher and distance use its exact "
                                 "samples")
        if "surrogate" in cfg.grids:
            raise InputError("`grids` = 'surrogate': the balanced grid of a mixture fitted to a model's training data: "
                             "expected `model` and `data` (a mixture is its own surrogate: use `balanced`)")
    if cfg.block == "conv":
        from .students import image_shape

        if not image_shape(cfg.sample_shape):
            raise InputError(f"`block` = 'conv': expected image-shaped samples (C, H, W); the "
                             f"{'model' if cfg.model else 'mixture'}'s samples have shape {tuple(cfg.sample_shape)}: "
                             "use `block` mlp")
