"""Train LeNet-5 on MNIST (the full set when present or downloadable, else the bundled 10,000-digit subset).

    python examples/mnist_lenet.py                 # defaults: 12 epochs, Adam with a one-cycle schedule
    python examples/mnist_lenet.py --dataset fashion-mnist --epochs 5
"""
from _common import parser, run

from minidl.models import LeNet5

if __name__ == "__main__":
    run(LeNet5, parser(__doc__, epochs=12, lr=3e-3).parse_args(), "lenet5")
