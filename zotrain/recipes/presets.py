"""Named recipes of ``zotrain train --preset``: an architecture, a parameter budget and
the training settings measured for it (docs/benchmarks.md).  Options given on the
command line override a preset's; a model over the budget is refused."""

PRESETS = {
    "tiny": dict(about="a <= 8,192-parameter (32 KB) model for an edge device",
                 model="mlp", hidden=256, rank=10, max_params=8192, epochs=20),
}
