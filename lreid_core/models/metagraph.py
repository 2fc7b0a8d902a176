"""AKA's knowledge graph (Pu et al., CVPR 2021; official code TPCD/LifelongReID ``lreid/models/metagraph_fd.py``,
class ``MetaGraph_fd``): N learnable vertices V (the accumulated knowledge) joined with a batch's features P into
one graph, propagated by one graph-convolution layer; the batch's rows of the output are its prototypes.

Example::

    graph = MetaGraph(dim=2048, vertices=64)
    protos = graph(feat.detach())                 # (B, C), each entry in (-1, 1)
    fused = feat + protos                         # what AKA's plasticity loss sees

Every operation below follows the code (written anew):

* edges within P and within V: A_ij = sigmoid(w . (a_i - a_j) + b) off the diagonal, 1 on it (``_construct_graph``;
  one ``Linear(C, 1)`` shared by both graphs, weight truncated-normal, bias 0.1). Linear in a_i - a_j, so it is
  computed as sigmoid(s_i - s_j + b) with s = a w^T instead of through the (n, n, C) differences;
* edges between P and V: softmax over the **batch** (the code's ``nn.Softmax(dim=0)``) of -||p_i - v_j||^2 / (2 sigma),
  squared distances clamped at 1e-6;
* the joint adjacency S = [[A_P, X], [X^T, A_V]] plus self-loops, row-normalised D^-1 (S + I) (``GraphConvolution``);
* one layer tanh(D^-1 (S + I) dropout([P; V]) W + b), W (C, C) truncated-normal (std 1, cut at 2), b = 0, dropout
  0.6 in training mode;
* V starts uniform in [0, 1) (``torch.rand``). The code's unused ``gate`` MLP and its logged correlations are left out.

The graph runs in fp32 (autocast off): its squared distances and W (std 1, C x C) overflow fp16.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def truncated_normal_(t: torch.Tensor) -> torch.Tensor:
    """N(0, 1) cut at +-2, the code's ``Truncated_initializer`` (which samples it by a radius-cut Box-Muller)."""
    return nn.init.trunc_normal_(t, mean=0.0, std=1.0, a=-2.0, b=2.0)


class MetaGraph(nn.Module):
    """Knowledge graph of ``vertices`` learnable C-dim vertices; ``forward`` maps features (B, C) to prototypes."""

    def __init__(self, dim: int, vertices: int = 64, sigma: float = 2.0, dropout: float = 0.6):
        super().__init__()
        self.sigma = sigma
        self.vertices = nn.Parameter(torch.rand(vertices, dim))          # V (N, C)
        self.edge = nn.Linear(dim, 1)                                    # the code's adj_mlp
        truncated_normal_(self.edge.weight.data)
        nn.init.constant_(self.edge.bias, 0.1)
        self.weight = nn.Parameter(truncated_normal_(torch.empty(dim, dim)))   # GCN W (C, C)
        self.bias = nn.Parameter(torch.zeros(dim))                       # GCN b (C,)
        self.dropout = nn.Dropout(dropout)
        # the previous step's vertices V^o (the code's frozen copy of the graph; L_stability's target)
        self.register_buffer("old_vertices", self.vertices.detach().clone())

    def adjacency(self, a: torch.Tensor) -> torch.Tensor:
        """Learned edges within one node set (n, C) -> (n, n): sigmoid(w . (a_i - a_j) + b), ones on the diagonal."""
        s = a @ self.edge.weight[0]                                      # (n,)
        graph = torch.sigmoid(s[:, None] - s[None, :] + self.edge.bias)
        eye = torch.eye(len(a), dtype=torch.bool, device=a.device)
        return graph.masked_fill(eye, 1.0)

    def cross(self, protos: torch.Tensor) -> torch.Tensor:
        """Edges batch -> vertices (B, N): softmax over the batch of -||p_i - v_j||^2 / (2 sigma)."""
        v = self.vertices
        d2 = (protos * protos).sum(1, keepdim=True) + (v * v).sum(1)[None] - 2 * protos @ v.t()
        return F.softmax(-d2.clamp_min(1e-6) / (2.0 * self.sigma), dim=0)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        """Prototypes (B, C) of a batch's features (B, C) (AKA passes them detached)."""
        with torch.autocast(feat.device.type, enabled=False):
            p, v = feat.float(), self.vertices
            x_pv = self.cross(p)                                         # (B, N)
            graph = torch.cat([torch.cat([self.adjacency(p), x_pv], 1),
                               torch.cat([x_pv.t(), self.adjacency(v)], 1)], 0)   # (B+N, B+N)
            graph = graph + torch.eye(len(graph), device=graph.device)
            graph = graph / graph.sum(1, keepdim=True)                   # D^-1 (S + I)
            nodes = self.dropout(torch.cat([p, v], 0))                   # (B+N, C)
            out = torch.tanh(graph @ (nodes @ self.weight) + self.bias)
        return out[: len(feat)]

    def remember(self) -> None:
        """End of a step: the current vertices become V^o for the next step's stability loss."""
        self.old_vertices.copy_(self.vertices.detach())
