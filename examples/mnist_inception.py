"""Train the small Inception net (GoogLeNet's InceptionA block) on MNIST, or the bundled subset offline.

    python examples/mnist_inception.py
"""
from _common import main

from minidl.models import InceptionNet

if __name__ == "__main__":
    main(InceptionNet, "inception", __doc__, epochs=8, lr=3e-3)
