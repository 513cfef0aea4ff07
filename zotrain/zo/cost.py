"""The cost account of one block's update: forwards run and their FLOPs."""


class CostAccount:
    """Block and head forwards run for one update, and their FLOPs per example
    (``Sequential.flops``), counted where they run, so a partial query costs what it ran;
    a PINN loss counts its network evaluations in ``points`` (in collocation points of its
    derivative rule)."""

    def __init__(self):
        self.block_forwards = 0
        self.head_forwards = 0
        self.flops = 0.0
        self.points = 0.0

    def blocks(self, n, net):
        self.block_forwards += n
        self.flops += n * net.flops()

    def heads(self, n, net):
        self.head_forwards += n
        self.flops += n * net.flops()

    def counts(self):
        return {"block_forwards": self.block_forwards, "head_forwards": self.head_forwards}
