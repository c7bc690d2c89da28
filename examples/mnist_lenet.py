"""Train LeNet-5 on MNIST (the full set when present or downloadable, else the bundled 10,000-digit subset).

    python examples/mnist_lenet.py                 # defaults: 12 epochs, Adam with a one-cycle schedule
    python examples/mnist_lenet.py --dataset fashion-mnist --epochs 5
    python examples/mnist_lenet.py --resume runs/lenet5_mnist_<date-time>/checkpoint.npz   # after Ctrl-C
"""
from _common import main

from minidl.models import LeNet5

if __name__ == "__main__":
    main(LeNet5, "lenet5", __doc__, epochs=12, lr=3e-3)
