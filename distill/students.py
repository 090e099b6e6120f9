"""Residual students: compositions of N blocks x <- x + f_i(x), trained segment by segment.

Block i owns the segment [t_{i-1}, t_i] of a descending grid and approximates the teacher map
Phi_{t_{i-1} -> t_i}.  Each residual f_i is an MLP with per-block input and target normalisation,

    f_i(x) = m_out + s_out * MLP_i((x - m_in) / s_in),      psi_i(x) = x + f_i(x),

where (m_in, s_in) are the coordinate-wise mean and standard deviation of x ~ p_{t_{i-1}} and
(m_out, s_out) those of the residual Phi(x) - x.  The last layer starts at zero, so an untrained
block is the identity plus the mean displacement.

A :class:`BlockStack` holds B blocks of equal shape as batched tensors (B, fan_in, fan_out) and
evaluates all of them with one ``torch.baddbmm`` per layer, so the N blocks of a student (and
the blocks of many students) train together in one batched kernel.  Each block's loss only
depends on its own parameters and Adam is element-wise, so training blocks together gives the
same optimisation problem as training them one by one.

Budgets: ``per-block`` gives every block the same width for every N; ``total`` chooses the
largest width such that N blocks together have at most a fixed parameter count, the fair
comparison between one-step and multi-step students.
"""

from __future__ import annotations

import math

import torch

BUDGETS = ("per-block", "total")


def param_count(d: int, width: int, depth: int) -> int:
    """Parameters of one block: depth hidden layers of ``width`` (SiLU) and a linear output."""
    return d * width + width + (depth - 1) * (width * width + width) + width * d + d


def width_for_total(total: int, N: int, d: int, depth: int) -> int:
    """Largest width w >= 1 with N * param_count(d, w, depth) <= total."""
    w = 1
    while N * param_count(d, w + 1, depth) <= total:
        w += 1
    return w


class BlockStack:
    """B residual MLP blocks with batched parameters.

    Parameters are lists of tensors W_l (B, fan_in, fan_out) and b_l (B, 1, fan_out); the
    normalisation statistics are (B, 1, d) tensors.
    """

    def __init__(self, weights, biases, m_in, s_in, m_out, s_out):
        self.weights, self.biases = list(weights), list(biases)
        self.m_in, self.s_in, self.m_out, self.s_out = m_in, s_in, m_out, s_out

    # ---------------------------------------------------------------- construction
    @classmethod
    def init(cls, B: int, d: int, width: int, depth: int, generator: torch.Generator,
             dtype=torch.float32, device="cpu") -> "BlockStack":
        """Uniform(+-1/sqrt(fan_in)) hidden layers (drawn on the CPU from ``generator``, so the
        initial weights are the same on every device), zero output layer, identity statistics."""
        sizes = [d] + [width] * depth + [d]
        weights, biases = [], []
        for li, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:])):
            bound = 1.0 / math.sqrt(fi)
            last = li == len(sizes) - 2
            W = torch.zeros(B, fi, fo, dtype=torch.float64) if last else \
                (torch.rand(B, fi, fo, generator=generator, dtype=torch.float64) * 2 - 1) * bound
            b = torch.zeros(B, 1, fo, dtype=torch.float64) if last else \
                (torch.rand(B, 1, fo, generator=generator, dtype=torch.float64) * 2 - 1) * bound
            weights.append(W.to(device=device, dtype=dtype))
            biases.append(b.to(device=device, dtype=dtype))
        zeros = torch.zeros(B, 1, d, dtype=dtype, device=device)
        return cls(weights, biases, zeros, zeros + 1, zeros.clone(), zeros + 1)

    @property
    def B(self) -> int:
        return self.weights[0].shape[0]

    @property
    def d(self) -> int:
        return self.weights[0].shape[1]

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

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """f_i(x_i) for x of shape (B, n, d) (block i applied to x[i])."""
        h = (x - self.m_in) / self.s_in
        return self.m_out + self.s_out * self._mlp(h, self.weights, self.biases)

    def residual_normalised(self, x: torch.Tensor) -> torch.Tensor:
        """MLP_i((x - m_in)/s_in): the prediction of (Phi(x) - x - m_out)/s_out."""
        return self._mlp((x - self.m_in) / self.s_in, self.weights, self.biases)

    def apply_block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """psi_i(x) = x + f_i(x) for x of shape (n, d)."""
        sl = slice(i, i + 1)
        h = (x[None] - self.m_in[sl]) / self.s_in[sl]
        f = self.m_out[sl] + self.s_out[sl] * self._mlp(h, [W[sl] for W in self.weights],
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
        return cls(mv(state["weights"]), mv(state["biases"]), *mv(state["stats"]))

    @classmethod
    def concat(cls, stacks) -> "BlockStack":
        stacks = list(stacks)
        cat = lambda ts: torch.cat(list(ts), 0)  # noqa: E731
        return cls([cat(s.weights[l] for s in stacks) for l in range(len(stacks[0].weights))],
                   [cat(s.biases[l] for s in stacks) for l in range(len(stacks[0].biases))],
                   *[cat(getattr(s, a) for s in stacks) for a in ("m_in", "s_in", "m_out", "s_out")])

    def to(self, dtype=None, device=None) -> "BlockStack":
        return BlockStack.from_state(self.state(), dtype or self.weights[0].dtype, device or self.weights[0].device)


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
        pred = stack._mlp((X[:, idx] - stack.m_in) / stack.s_in, stack.weights, stack.biases)
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
