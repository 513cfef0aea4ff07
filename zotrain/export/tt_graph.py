"""A TT-matrix layer's forward and its cores' gradients as ONNX nodes, through its halves.

The cores split at ``m = d // 2`` into a left half ``L`` ``(N_l, M_l, r)`` (cores 1..m
contracted: input modes, output modes, the rank between the halves) and a right half
``R`` ``(r, N_r, M_r)``, as ``zotrain.nn.tt_split`` splits them.  Both halves are small
(their sizes add, where the dense matrix's multiply), and the batch meets them in four
matrix products, which every runtime runs fast:

* forward: ``T = X (B N_l, N_r) @ R (N_r, r M_r)``, then ``Y = T (B M_r, N_l r) @ L
  (N_l r, M_l)``;
* gradients from ``D = dL/dY``: ``dL/dL = D^T T`` and ``dL/dR = X^T (L D)``, then each
  core's share by contracting the half's gradient with the half's other cores (small
  Einsums on core-sized tensors).

No tensor of the dense matrix's size is formed.
"""

import numpy as np


class TTNodes:
    """The nodes of one TT layer (``layer.shape``, core node names ``cores``) in graph
    ``g`` (a ``zotrain.export.onnx.Graph``)."""

    def __init__(self, g, layer, cores):
        s = layer.shape
        self.g, self.cores, self.shapes = g, cores, s.core_shapes
        self.d, self.m = s.n_modes, max(1, s.n_modes // 2)
        ins = [c[1] for c in s.core_shapes]
        outs = [c[2] for c in s.core_shapes]
        self.nl, self.nr = int(np.prod(ins[:self.m])), int(np.prod(ins[self.m:]))
        self.ml, self.mr = int(np.prod(outs[:self.m])), int(np.prod(outs[self.m:]))
        self.r = s.core_shapes[self.m - 1][3]
        self.n_in, self.n_out = s.in_features, s.out_features
        self.lefts = self._left_prefixes()  # lefts[k]: cores 0..k-1, (N, M, r_k)
        self.rights = self._right_suffixes()  # rights[k]: cores k..d-1, (r_k, N, M)

    def i(self, value):
        return self.g.const(value, np.int64)

    def _left_prefixes(self):
        g = self.g
        out = {1: g.op("Reshape", [self.cores[0], self.i(list(self.shapes[0][1:]))])}
        for k in range(1, self.m):
            r0, n, o, r1 = self.shapes[k]
            prev = out[k]
            T = g.op("Einsum", [prev, self.cores[k]], equation="xyr,rnos->xnyos")
            N, M = self._sizes(0, k + 1)
            out[k + 1] = g.op("Reshape", [T, self.i([N, M, r1])])
        return out

    def _right_suffixes(self):
        g, d = self.g, self.d
        r0, n, o, _ = self.shapes[d - 1]
        out = {d - 1: g.op("Reshape", [self.cores[d - 1], self.i([r0, n, o])])}
        for k in range(d - 2, self.m - 1, -1):
            r0 = self.shapes[k][0]
            T = g.op("Einsum", [self.cores[k], out[k + 1]], equation="rnos,sxy->rnxoy")
            N, M = self._sizes(k, d)
            out[k] = g.op("Reshape", [T, self.i([r0, N, M])])
        return out

    def _sizes(self, a, b):
        return (int(np.prod([c[1] for c in self.shapes[a:b]])),
                int(np.prod([c[2] for c in self.shapes[a:b]])))

    def forward(self, X):
        """``Y = X @ W`` ``(B, out)`` of ``X`` ``(B, in)``; keeps what the gradients need."""
        g, i = self.g, self.i
        L, R = self.lefts[self.m], self.rights[self.m]
        Rm = g.op("Reshape", [g.op("Transpose", [R], perm=[1, 0, 2]), i([self.nr, -1])])
        self.X = X
        T = g.op("MatMul", [g.op("Reshape", [X, i([-1, self.nr])]), Rm])  # (B N_l, r M_r)
        T = g.op("Transpose", [g.op("Reshape", [T, i([-1, self.nl, self.r, self.mr])])],
                 perm=[0, 3, 1, 2])  # (B, M_r, N_l, r)
        self.T = g.op("Reshape", [T, i([-1, self.nl * self.r])])  # (B M_r, N_l r)
        self.Lm = g.op("Reshape", [g.op("Transpose", [L], perm=[0, 2, 1]),
                                   i([self.nl * self.r, self.ml])])
        Y = g.op("MatMul", [self.T, self.Lm])  # (B M_r, M_l)
        Y = g.op("Transpose", [g.op("Reshape", [Y, i([-1, self.mr, self.ml])])], perm=[0, 2, 1])
        return g.op("Reshape", [Y, i([-1, self.n_out])])

    def core_gradients(self, D):
        """Each core's gradient of ``<D, X @ W>`` (``D`` ``(B, out)``), in core order."""
        g, i = self.g, self.i
        Dr = g.op("Reshape", [D, i([-1, self.ml, self.mr])])
        Dt = g.op("Reshape", [g.op("Transpose", [Dr], perm=[1, 0, 2]), i([self.ml, -1])])
        gL = g.op("MatMul", [Dt, g.op("Reshape", [self.T, i([-1, self.nl * self.r])])])
        gL = g.op("Transpose", [g.op("Reshape", [gL, i([self.ml, self.nl, self.r])])],
                  perm=[1, 0, 2])  # (N_l, M_l, r)
        U = g.op("MatMul", [self.Lm, Dr])  # (N_l r, M_l) @ (B, M_l, M_r): (B, N_l r, M_r)
        Xt = g.op("Transpose", [g.op("Reshape", [self.X, i([-1, self.nr])]), ], perm=[1, 0])
        gR = g.op("MatMul", [Xt, g.op("Reshape", [U, i([-1, self.r * self.mr])])])
        gR = g.op("Transpose", [g.op("Reshape", [gR, i([self.nr, self.r, self.mr])])],
                  perm=[1, 0, 2])  # (r, N_r, M_r)
        return self._project_left(gL) + self._project_right(gR)

    def _project_left(self, gL):
        """Cores 0..m-1's gradients from the left half's ``gL`` ``(N_l, M_l, r)``."""
        g, out = self.g, []
        suffix = self._eye(self.r)  # cores k+1..m-1 contracted: (r_k, N, M, r)
        suffixes = {self.m - 1: suffix}
        for k in range(self.m - 1, 0, -1):
            T = g.op("Einsum", [self.cores[k], suffixes[k]], equation="bnos,sXYc->bnXoYc")
            N, M = self._sizes(k, self.m)
            suffixes[k - 1] = g.op("Reshape", [T, self.i([self.shapes[k][0], N, M, self.r])])
        for k in range(self.m):
            r0, n, o, r1 = self.shapes[k]
            prefix = self.lefts[k] if k > 0 else self.g.const(np.ones((1, 1, 1)), np.float32)
            Nb, Mb = self._sizes(0, k)
            Na, Ma = self._sizes(k + 1, self.m)
            g5 = g.op("Reshape", [gL, self.i([Nb, n, Na, Mb, o, Ma, self.r])])
            out.append(g.op("Einsum", [prefix, g5, suffixes[k]],
                            equation="xya,xnXyoYc,bXYc->anob"))
        return out

    def _project_right(self, gR):
        """Cores m..d-1's gradients from the right half's ``gR`` ``(r, N_r, M_r)``."""
        g, out = self.g, []
        prefix = self._eye(self.r)  # (r, N, M, r_k): cores m..k-1 contracted
        for k in range(self.m, self.d):
            r0, n, o, r1 = self.shapes[k]
            Nb, Mb = self._sizes(self.m, k)
            Na, Ma = self._sizes(k + 1, self.d)
            g5 = g.op("Reshape", [gR, self.i([self.r, Nb, n, Na, Mb, o, Ma])])
            suffix = self.rights[k + 1] if k + 1 < self.d else \
                self.g.const(np.ones((1, 1, 1)), np.float32)
            out.append(g.op("Einsum", [prefix, g5, suffix], equation="cxya,cxnXyoY,bXY->anob"))
            if k + 1 < self.d:
                T = g.op("Einsum", [prefix, self.cores[k]], equation="cxya,anob->cxnyob")
                N, M = self._sizes(self.m, k + 1)
                prefix = g.op("Reshape", [T, self.i([self.r, N, M, r1])])
        return out

    def _eye(self, r):
        return self.g.const(np.eye(r).reshape(r, 1, 1, r), np.float32)
