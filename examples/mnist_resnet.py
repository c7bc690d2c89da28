"""Train the small residual net (two ResidualBlocks) on MNIST, or the bundled subset offline.

    python examples/mnist_resnet.py
"""
from _common import main

from minidl.models import ResidualNet

if __name__ == "__main__":
    main(ResidualNet, "residualnet", __doc__, epochs=8, lr=3e-3)
