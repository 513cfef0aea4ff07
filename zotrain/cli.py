"""The ``zotrain`` command line."""

import argparse
import sys

from zotrain import models


def _cmd_data(args):
    from zotrain.data import DataError, load_mnist, resolve_data_dir

    try:
        d = load_mnist(args.data, download_missing=not args.no_download)
    except DataError as e:
        print(f"zotrain data: {e}", file=sys.stderr)
        return 2
    print(f"MNIST in {resolve_data_dir(args.data)}: {len(d.x_train)} training and "
          f"{len(d.x_test)} test images")
    return 0


def _cmd_models(args):
    for name, factory in (("mnist", models.mnist_mlp), ("pinn", models.pinn_mlp)):
        m = factory()
        print(f"{name}: {m.n_params} trainable parameters, {m.dense_params} dense "
              f"({m.dense_params / m.n_params:.0f}x compression)\n{m}\n")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="zotrain",
        description="Forward-only (backpropagation-free) training of tensor-train networks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("data", help="locate, download and check the MNIST files")
    p.add_argument("--data", metavar="DIR", help="data directory (default: $ZOTRAIN_DATA or "
                   "the user cache)")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading")
    p.set_defaults(func=_cmd_data)
    p = sub.add_parser("models", help="print the reference architectures and their sizes")
    p.set_defaults(func=_cmd_models)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
