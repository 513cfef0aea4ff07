"""Classify the MNIST test set with onnxruntime alone, as an inference-only device would.

No zotrain import: the model file comes from `zotrain export RUN_DIR`, the
images from the IDX file as pixels in [0, 1] (the graph normalises them itself).

    python examples/edge_inference.py MODEL.onnx [--data DIR]
"""

import argparse
import gzip
import os
import struct

import numpy as np
import onnxruntime as ort

def read_idx(path):
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(directory, stem):
    for name in (stem + ".gz", stem):
        if os.path.exists(os.path.join(directory, name)):
            return os.path.join(directory, name)
    raise SystemExit(f"{stem}(.gz) not found in {directory}")


ap = argparse.ArgumentParser()
ap.add_argument("model", help="an ONNX file written by `zotrain export`")
ap.add_argument("--data", default=os.environ.get("ZOTRAIN_DATA", "."), help="MNIST directory")
args = ap.parse_args()

images = read_idx(find(args.data, "t10k-images-idx3-ubyte"))
labels = read_idx(find(args.data, "t10k-labels-idx1-ubyte"))
X = images.reshape(len(images), -1).astype(np.float32) / 255.0

session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
logits = session.run(["Y"], {"X": X})[0]
print(f"{len(labels)} test images, accuracy {np.mean(logits.argmax(axis=1) == labels):.4f}")
