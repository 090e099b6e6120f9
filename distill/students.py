"""Residual students: compositions of N blocks x <- x + f_i(x), trained segment by segment.

Block i owns the segment [t_{i-1}, t_i] of a descending grid and approximates the teacher map
Phi_{t_{i-1} -> t_i}.  Each residual f_i is a small network with per-block input and target normalisation,

    f_i(x) = m_out + s_out * NET_i((x - m_in) / s_in),      psi_i(x) = x + f_i(x),

where (m_in, s_in) are the coordinate-wise mean and standard deviation of x ~ p_{t_{i-1}} and
(m_out, s_out) those of the residual Phi(x) - x.  The last layer starts at zero, so an untrained
block is the identity plus the mean displacement.

Two block types (``BLOCKS``), one interface:

* ``mlp`` (:class:`BlockStack`): NET_i is an MLP (``depth`` hidden layers of ``width``, SiLU) on the
  flattened sample; B blocks are batched tensors (B, fan_in, fan_out), evaluated with one
  ``torch.baddbmm`` per layer;
* ``conv`` (:class:`ConvStack`, image-shaped samples (C, H, W) only): NET_i is a small convolutional
  network (``depth`` hidden 3 x 3 convolutions of ``width`` channels, SiLU, zero padding, a 3 x 3
  convolution back to C channels); B blocks are one grouped convolution per layer (``groups = B``).

Either way the N blocks of a student (and the blocks of many students) train together in one batched
kernel.  Each block's loss only depends on its own parameters and Adam is element-wise, so training
blocks together gives the same optimisation problem as training them one by one.

Budgets: ``per-block`` gives every block the same width for every N; ``total`` chooses the
largest width such that N blocks together have at most a fixed parameter count, the fair
comparison between one-step and multi-step students.
"""

from __future__ import annotations

import math

import torch

BUDGETS = ("per-block", "total")
BLOCKS = ("mlp", "conv")
KERNEL = 3  # the conv block's kernel size


def param_count(d: int, width: int, depth: int) -> int:
    """Parameters of one MLP block: depth hidden layers of ``width`` (SiLU) and a linear output."""
    return d * width + width + (depth - 1) * (width * width + width) + width * d + d


def conv_param_count(shape, width: int, depth: int) -> int:
    """Parameters of one conv block on samples of ``shape`` (C, H, W): depth hidden 3 x 3 convolutions of ``width``
    channels and a 3 x 3 convolution back to C channels."""
    c, k2 = int(shape[0]), KERNEL * KERNEL
    return c * width * k2 + width + (depth - 1) * (width * width * k2 + width) + width * c * k2 + c


def block_params(block: str, shape, width: int, depth: int) -> int:
    """Parameters of one block of type ``block`` on samples of ``shape``."""
    if block == "conv":
        return conv_param_count(shape, width, depth)
    return param_count(int(math.prod(shape)), width, depth)


def width_for_total(total: int, N: int, d: int, depth: int, *, block: str = "mlp", shape=None) -> int:
    """Largest width w >= 1 with N * (parameters of one block of width w) <= total (``shape``: the sample's shape,
    for ``block`` conv; (d,) otherwise)."""
    shape = (d,) if shape is None else tuple(shape)
    w = 1
    while N * block_params(block, shape, w + 1, depth) <= total:
        w += 1
    return w


def image_shape(shape) -> bool:
    """Whether samples of ``shape`` are images (C, H, W) a conv block fits."""
    return len(shape) == 3 and min(shape) >= 1


class BlockStack:
    """B residual MLP blocks with batched parameters.

    Parameters are lists of tensors W_l (B, fan_in, fan_out) and b_l (B, 1, fan_out); the
    normalisation statistics are (B, 1, d) tensors.  :class:`ConvStack` shares everything but the
    network (:meth:`net`) and the parameter shapes.
    """

    block = "mlp"

    def __init__(self, weights, biases, m_in, s_in, m_out, s_out):
        self.weights, self.biases = list(weights), list(biases)
        self.m_in, self.s_in, self.m_out, self.s_out = m_in, s_in, m_out, s_out

    # ---------------------------------------------------------------- construction
    @staticmethod
    def layer_shapes(B: int, shape, width: int, depth: int) -> list[tuple[tuple, tuple]]:
        """(weight shape, bias shape) of every layer for B blocks on samples of ``shape``."""
        d = int(math.prod(shape))
        sizes = [d] + [width] * depth + [d]
        return [((B, fi, fo), (B, 1, fo)) for fi, fo in zip(sizes[:-1], sizes[1:])]

    @staticmethod
    def _fan_in(wshape) -> int:
        return int(wshape[1])

    @classmethod
    def init(cls, B: int, d, width: int, depth: int, generator: torch.Generator,
             dtype=torch.float32, device="cpu") -> "BlockStack":
        """Uniform(+-1/sqrt(fan_in)) hidden layers (drawn on the CPU from ``generator``, so the
        initial weights are the same on every device), zero output layer, identity statistics.
        ``d``: numbers per sample (an MLP), or the sample's shape."""
        shape = (int(d),) if isinstance(d, int) else tuple(int(s) for s in d)
        layers = cls.layer_shapes(B, shape, width, depth)
        weights, biases = [], []
        for li, (ws, bs) in enumerate(layers):
            bound = 1.0 / math.sqrt(cls._fan_in(ws))
            last = li == len(layers) - 1
            W = torch.zeros(ws, dtype=torch.float64) if last else \
                (torch.rand(ws, generator=generator, dtype=torch.float64) * 2 - 1) * bound
            b = torch.zeros(bs, dtype=torch.float64) if last else \
                (torch.rand(bs, generator=generator, dtype=torch.float64) * 2 - 1) * bound
            weights.append(W.to(device=device, dtype=dtype))
            biases.append(b.to(device=device, dtype=dtype))
        n = int(math.prod(shape))
        zeros = torch.zeros(B, 1, n, dtype=dtype, device=device)
        return cls._make(weights, biases, (zeros, zeros + 1, zeros.clone(), zeros + 1), shape)

    @classmethod
    def _make(cls, weights, biases, stats, shape):
        return cls(weights, biases, *stats)

    @property
    def B(self) -> int:
        return self.weights[0].shape[0]

    @property
    def d(self) -> int:
        return self.m_in.shape[-1]

    @property
    def width(self) -> int:
        return self.weights[0].shape[2]

    @property
    def depth(self) -> int:
        return len(self.weights) - 1

    def parameters(self):
        return self.weights + self.biases

    def set_normalisation(self, X: torch.Tensor, Y: torch.Tensor, floor: float = 1e-8):
        """Statistics from inputs X (B, n, d) and teacher outputs Y (B, n, d)."""
        R = Y - X
        self.m_in, self.m_out = X.mean(1, keepdim=True), R.mean(1, keepdim=True)
        self.s_in = X.std(1, keepdim=True).clamp_min(floor)
        self.s_out = R.std(1, keepdim=True).clamp_min(floor)

    # ---------------------------------------------------------------- evaluation
    def _mlp(self, h, weights, biases):
        for W, b in zip(weights[:-1], biases[:-1]):
            h = torch.nn.functional.silu(torch.baddbmm(b, h, W))
        return torch.baddbmm(biases[-1], h, weights[-1])

    def net(self, h, weights, biases):
        """NET_i of every block on its normalised inputs h (B, n, d), parameters ``weights``/``biases``."""
        return self._mlp(h, weights, biases)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """f_i(x_i) for x of shape (B, n, d) (block i applied to x[i])."""
        h = (x - self.m_in) / self.s_in
        return self.m_out + self.s_out * self.net(h, self.weights, self.biases)

    def residual_normalised(self, x: torch.Tensor) -> torch.Tensor:
        """NET_i((x - m_in)/s_in): the prediction of (Phi(x) - x - m_out)/s_out."""
        return self.net((x - self.m_in) / self.s_in, self.weights, self.biases)

    def apply_block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """psi_i(x) = x + f_i(x) for x of shape (n, d)."""
        sl = slice(i, i + 1)
        h = (x[None] - self.m_in[sl]) / self.s_in[sl]
        f = self.m_out[sl] + self.s_out[sl] * self.net(h, [W[sl] for W in self.weights],
                                                       [b[sl] for b in self.biases])
        return x + f[0]

    def chain(self, x: torch.Tensor, keep: bool = False):
        """Psi(x) = psi_B o ... o psi_1 (x); with ``keep`` also the states before each block."""
        states = [x]
        for i in range(self.B):
            x = self.apply_block(i, x)
            states.append(x)
        return (x, states) if keep else x

    # ---------------------------------------------------------------- (de)serialisation
    def state(self) -> dict:
        return {"weights": [w.detach().cpu().clone() for w in self.weights],
                "biases": [b.detach().cpu().clone() for b in self.biases],
                "stats": [a.detach().cpu().clone() for a in (self.m_in, self.s_in, self.m_out, self.s_out)]}

    @classmethod
    def from_state(cls, state: dict, dtype=torch.float32, device="cpu") -> "BlockStack":
        mv = lambda ts: [t.to(device=device, dtype=dtype) for t in ts]  # noqa: E731
        return cls._make(mv(state["weights"]), mv(state["biases"]), mv(state["stats"]), state.get("shape"))

    @classmethod
    def concat(cls, stacks) -> "BlockStack":
        stacks = list(stacks)
        cat = lambda ts: torch.cat(list(ts), 0)  # noqa: E731
        return cls._make([cat(s.weights[l] for s in stacks) for l in range(len(stacks[0].weights))],
                         [cat(s.biases[l] for s in stacks) for l in range(len(stacks[0].biases))],
                         [cat(getattr(s, a) for s in stacks) for a in ("m_in", "s_in", "m_out", "s_out")],
                         getattr(stacks[0], "shape", None))

    def to(self, dtype=None, device=None) -> "BlockStack":
        return type(self).from_state(self.state(), dtype or self.weights[0].dtype, device or self.weights[0].device)


class ConvStack(BlockStack):
    """B residual convolutional blocks for image-shaped samples (C, H, W), batched as grouped convolutions.

    Weights W_l (B, c_out, c_in, 3, 3) and biases b_l (B, c_out); the normalisation statistics are (B, 1, d)
    tensors on the flattened sample, as for :class:`BlockStack`.  Block i's input is its flattened batch
    reshaped to images; layer l of all B blocks is one ``conv2d`` with ``groups = B`` on the B blocks' channels
    stacked, so block i only ever sees its own inputs and weights.
    """

    block = "conv"

    def __init__(self, weights, biases, m_in, s_in, m_out, s_out, shape=None):
        super().__init__(weights, biases, m_in, s_in, m_out, s_out)
        if shape is None or len(shape) != 3:
            raise ValueError(f"a conv block needs an image shape (C, H, W), got {shape!r}")
        self.shape = tuple(int(s) for s in shape)

    @staticmethod
    def layer_shapes(B: int, shape, width: int, depth: int) -> list[tuple[tuple, tuple]]:
        c = int(shape[0])
        chans = [c] + [width] * depth + [c]
        return [((B, co, ci, KERNEL, KERNEL), (B, co)) for ci, co in zip(chans[:-1], chans[1:])]

    @staticmethod
    def _fan_in(wshape) -> int:
        return int(wshape[2] * wshape[3] * wshape[4])

    @classmethod
    def _make(cls, weights, biases, stats, shape):
        return cls(weights, biases, *stats, shape=shape)

    @property
    def width(self) -> int:
        return self.weights[0].shape[1]

    def net(self, h, weights, biases):
        B, n, d = h.shape
        c, H, W = self.shape
        z = h.reshape(B, n, c, H, W).transpose(0, 1).reshape(n, B * c, H, W)
        last = len(weights) - 1
        for li, (Wl, bl) in enumerate(zip(weights, biases)):
            Bw, co, ci, k, _ = Wl.shape
            z = torch.nn.functional.conv2d(z, Wl.reshape(Bw * co, ci, k, k), bl.reshape(Bw * co), padding=k // 2,
                                           groups=Bw)
            if li < last:
                z = torch.nn.functional.silu(z)
        return z.reshape(n, B, c, H, W).transpose(0, 1).reshape(B, n, d)

    def state(self) -> dict:
        return {**super().state(), "shape": list(self.shape)}


def stack_class(block: str):
    """The block stack of a block type (``BLOCKS``)."""
    return ConvStack if block == "conv" else BlockStack


def _lr(step: int, total: int, lr: float, warmup: int = 50) -> float:
    """Linear warm-up, then cosine decay to lr/100."""
    if step < warmup:
        return lr * (step + 1) / warmup
    u = (step - warmup) / max(1, total - warmup)
    return lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * u)))


def train_segments(stack: BlockStack, X: torch.Tensor, Y: torch.Tensor, *, iters: int, batch: int,
                   lr: float, generator: torch.Generator, progress=None) -> torch.Tensor:
    """Segment-wise distillation: block i learns x -> Y[i] from X[i] (each (B, n, d)).

    Loss per block: mean squared error of the normalised residual; blocks are summed so that
    each block's gradient is that of its own loss.  Mini-batch indices are drawn on the CPU
    from ``generator`` (the same on every device) and shared by the blocks.  Returns the
    per-block normalised training loss averaged over the last 10% of the iterations.
    """
    stack.set_normalisation(X, Y)
    target = (Y - X - stack.m_out) / stack.s_out
    params = stack.parameters()
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    n = X.shape[1]
    tail = max(1, iters // 10)
    acc = torch.zeros(stack.B, dtype=X.dtype, device=X.device)
    for step in range(iters):
        for g in opt.param_groups:
            g["lr"] = _lr(step, iters, lr)
        idx = torch.randint(n, (min(batch, n),), generator=generator).to(X.device)
        pred = stack.net((X[:, idx] - stack.m_in) / stack.s_in, stack.weights, stack.biases)
        per_block = ((pred - target[:, idx]) ** 2).mean((1, 2))
        opt.zero_grad(set_to_none=True)
        per_block.sum().backward()
        opt.step()
        if step >= iters - tail:
            acc += per_block.detach()
        if progress is not None:
            progress.update(1)
    for p in params:
        p.requires_grad_(False)
    return acc / tail


def finetune_chain(stack: BlockStack, x0: torch.Tensor, target: torch.Tensor, *, iters: int, batch: int,
                   lr: float, generator: torch.Generator) -> float:
    """End-to-end fine-tuning of the chained student on teacher pairs (x_T, Phi_{T->delta}(x_T)).

    Loss: E||Psi(x) - Phi(x)||^2 / E||Phi(x)||^2 on mini-batches.  Returns the loss averaged over
    the last 10% of the iterations."""
    params = stack.parameters()
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    scale = (target**2).sum(1).mean()
    n, tail, acc = x0.shape[0], max(1, iters // 10), 0.0
    for step in range(iters):
        for g in opt.param_groups:
            g["lr"] = _lr(step, iters, lr, warmup=10)
        idx = torch.randint(n, (min(batch, n),), generator=generator).to(x0.device)
        loss = ((stack.chain(x0[idx]) - target[idx]) ** 2).sum(1).mean() / scale
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= iters - tail:
            acc += float(loss)
    for p in params:
        p.requires_grad_(False)
    return acc / tail
