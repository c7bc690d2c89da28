"""Train the small Inception net (GoogLeNet's InceptionA block) on MNIST, or the bundled subset offline.

    python examples/mnist_inception.py
"""
from _common import parser, run

from minidl.models import InceptionNet

if __name__ == "__main__":
    run(InceptionNet, parser(__doc__, epochs=8, lr=3e-3).parse_args(), "inception")
