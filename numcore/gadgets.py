"""Exact ReLU-ReQU gadgets and a layer builder for constructive networks.

A value carried between layers is an affine form ``Aff`` over the outputs of
the layer before.  A :class:`LayerBuilder` turns forms into neurons and returns
the gadget's value as a form over the new layer's outputs:

    pass v >= 0   ReLU(v)                                         1 neuron
    pass any v    ReLU(v) - ReLU(-v)                              2
    v^2           ReQU(v) + ReQU(-v)        (ReQU(v) if v >= 0)   2 (1)
    a b           (ReQU(a+b) + ReQU(-a-b) - ReQU(a-b) - ReQU(b-a)) / 4
                                             (a, b >= 0: drop ReQU(-a-b))  4 (3)

Affine maps between gadgets fold into the next layer's weights, so a form is
all a gadget needs.  Every identity above is exact in real arithmetic.
"""

from __future__ import annotations

import numpy as np

from .network import Layer, RELU, REQU


class Aff:
    """sum_j coef[j] z_j + const over the outputs z of one layer."""

    __slots__ = ("coef", "const")

    def __init__(self, coef=None, const=0.0):
        self.coef = dict(coef or {})
        self.const = float(const)

    def __add__(self, other):
        if not isinstance(other, Aff):
            return Aff(self.coef, self.const + float(other))
        c = dict(self.coef)
        for j, v in other.coef.items():
            c[j] = c.get(j, 0.0) + v
        return Aff(c, self.const + other.const)

    __radd__ = __add__

    def __neg__(self):
        return Aff({j: -v for j, v in self.coef.items()}, -self.const)

    def __sub__(self, other):
        return self + (-other)

    def __rsub__(self, other):
        return (-self) + other

    def __mul__(self, s):
        s = float(s)
        return Aff({j: s * v for j, v in self.coef.items()}, s * self.const)

    __rmul__ = __mul__

    def __truediv__(self, s):
        return self * (1.0 / float(s))


def inputs(n: int) -> list[Aff]:
    """The network inputs x_0..x_{n-1} as forms."""
    return [Aff({i: 1.0}) for i in range(n)]


def combine(forms, weights, const=0.0) -> Aff:
    """sum_i weights[i] forms[i] + const."""
    out = Aff(const=const)
    for f, w in zip(forms, weights):
        if w != 0.0:
            out = out + f * w
    return out


class LayerBuilder:
    """Collects the neurons of one hidden layer (rows over n_in previous outputs)."""

    def __init__(self, n_in: int, name: str = ""):
        self.n_in = n_in
        self.name = name
        self.rows: list[Aff] = []
        self.acts: list[int] = []

    def unit(self, form: Aff, act: int) -> Aff:
        self.rows.append(form)
        self.acts.append(act)
        return Aff({len(self.rows) - 1: 1.0})

    # gadgets ------------------------------------------------------------
    def relu(self, v: Aff) -> Aff:
        """ReLU(v): exact pass of v >= 0."""
        return self.unit(v, RELU)

    def ident(self, v: Aff) -> Aff:
        """v = ReLU(v) - ReLU(-v) for any sign."""
        return self.unit(v, RELU) - self.unit(-v, RELU)

    def square(self, v: Aff) -> Aff:
        return self.unit(v, REQU) + self.unit(-v, REQU)

    def square_pos(self, v: Aff) -> Aff:
        """v^2 for v >= 0."""
        return self.unit(v, REQU)

    def mul(self, a: Aff, b: Aff) -> Aff:
        s, d = a + b, a - b
        return (self.unit(s, REQU) + self.unit(-s, REQU) - self.unit(d, REQU) - self.unit(-d, REQU)) * 0.25

    def mul_pos(self, a: Aff, b: Aff) -> Aff:
        """a b for a, b >= 0 (a + b >= 0, so ReQU(-a-b) = 0 is dropped)."""
        s, d = a + b, a - b
        return (self.unit(s, REQU) - self.unit(d, REQU) - self.unit(-d, REQU)) * 0.25

    def close(self) -> Layer:
        W = np.zeros((len(self.rows), self.n_in))
        b = np.zeros(len(self.rows))
        for r, f in enumerate(self.rows):
            for j, v in f.coef.items():
                W[r, j] = v
            b[r] = f.const
        return Layer(W, b, np.asarray(self.acts, np.uint8), self.name)


def output_map(forms, n_in: int):
    """(W_out, b_out) of the affine output map from forms over the last hidden layer."""
    W = np.zeros((len(forms), n_in))
    b = np.zeros(len(forms))
    for r, f in enumerate(forms):
        for j, v in f.coef.items():
            W[r, j] = v
        b[r] = f.const
    return W, b
