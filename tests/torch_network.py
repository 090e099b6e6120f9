"""A certified ReLU-ReQU network (:class:`numcore.network.Network`) as a torch module."""

from __future__ import annotations

import torch

from flowcert.numcore.network import REQU, Network


class ReLUReQU(torch.nn.Module):
    """A linear map, then ReLU or ReQU (max(u, 0)^2) per neuron."""

    def __init__(self, W, b, act, dtype):
        super().__init__()
        self.linear = torch.nn.Linear(W.shape[1], W.shape[0], dtype=dtype)
        with torch.no_grad():
            self.linear.weight.copy_(torch.as_tensor(W, dtype=dtype))
            self.linear.bias.copy_(torch.as_tensor(b, dtype=dtype))
        self.register_buffer("requ", torch.as_tensor(act == REQU))

    def forward(self, z):
        r = torch.relu(self.linear(z))
        return torch.where(self.requ, r * r, r)


class ScoreNet(torch.nn.Module):
    """Hidden ReLU-ReQU layers and an affine output, weights copied from a :class:`Network`."""

    def __init__(self, net: Network, dtype=torch.float64):
        super().__init__()
        self.hidden = torch.nn.Sequential(*[ReLUReQU(L.W, L.b, L.act, dtype) for L in net.layers])
        self.out = torch.nn.Linear(net.W_out.shape[1], net.W_out.shape[0], dtype=dtype)
        with torch.no_grad():
            self.out.weight.copy_(torch.as_tensor(net.W_out, dtype=dtype))
            self.out.bias.copy_(torch.as_tensor(net.b_out, dtype=dtype))

    def forward(self, x):
        return self.out(self.hidden(x))


def to_torch(net: Network, dtype=None) -> torch.nn.Module:
    """A ``torch.nn.Module`` computing ``net``'s map (float64 unless ``dtype`` is given).

    Input shape (n, net.n_in), output shape (n, net.n_out), as ``net(x)``.
    """
    return ScoreNet(net, dtype or torch.float64)
