"""Sine waves predicted by two LSTM cells, trained with L-BFGS, in the manner of PyTorch's time_sequence_prediction
example: the model reads each wave one value at a time, then goes on alone for ``future`` steps, feeding its own
output back; the whole training set is one batch and every L-BFGS step calls the closure several times. Written
with minidl imported as torch; with `import torch` it runs under torch. Float64 throughout, as the original.

    python examples/pytorch_style/time_sequence_prediction.py            # 8 L-BFGS steps
    python examples/pytorch_style/time_sequence_prediction.py --steps 15
"""
import argparse

import numpy as np

import minidl as torch
import minidl.nn as nn


def make_waves(n=100, length=1000, period=20, seed=2):
    """``n`` sine waves of ``length`` samples, each shifted by a random offset: (n, length) float64."""
    rng = np.random.RandomState(seed)
    x = np.arange(length) + rng.randint(-4 * period, 4 * period, n).reshape(n, 1)
    return np.sin(x / period).astype("float64")


class Sequence(nn.Module):
    def __init__(self, hidden=51):
        super().__init__()
        self.hidden = hidden
        self.lstm1 = nn.LSTMCell(1, hidden)
        self.lstm2 = nn.LSTMCell(hidden, hidden)
        self.linear = nn.Linear(hidden, 1)

    def forward(self, input, future=0):
        n = input.size(0)
        h_t = c_t = torch.zeros(n, self.hidden, dtype=torch.double)
        h_t2 = c_t2 = torch.zeros(n, self.hidden, dtype=torch.double)
        outputs = []
        output = None
        for input_t in input.split(1, dim=1):
            h_t, c_t = self.lstm1(input_t, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs.append(output)
        for _ in range(future):  # the model alone: its own output is the next input
            h_t, c_t = self.lstm1(output, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs.append(output)
        return torch.cat(outputs, dim=1)


def train(seq, data, steps, lr=0.8, future=100, log=print):
    """``steps`` L-BFGS steps on the first waves from ``data`` (the first 3 are the test set); returns the training
    losses (the closure's last value each step) and the test losses."""
    input, target = torch.from_numpy(data[3:, :-1]), torch.from_numpy(data[3:, 1:])
    test_input, test_target = torch.from_numpy(data[:3, :-1]), torch.from_numpy(data[:3, 1:])
    criterion = nn.MSELoss()
    optimizer = torch.optim.LBFGS(seq.parameters(), lr=lr)
    train_losses, test_losses = [], []
    for i in range(steps):
        def closure():
            optimizer.zero_grad()
            loss = criterion(seq(input), target)
            loss.backward()
            return loss
        train_losses.append(optimizer.step(closure).item())
        with torch.no_grad():
            pred = seq(test_input, future=future)
            test_losses.append(criterion(pred[:, :-future], test_target).item())
        log(f"step {i}: train loss {train_losses[-1]:.6f}, test loss {test_losses[-1]:.6f}")
    return train_losses, test_losses


def main(argv=None):
    parser = argparse.ArgumentParser(description="sine waves predicted by LSTM cells trained with L-BFGS")
    parser.add_argument("--steps", type=int, default=8, help="L-BFGS steps")
    parser.add_argument("--waves", type=int, default=30, help="waves in the data (3 for testing)")
    parser.add_argument("--length", type=int, default=300, help="samples per wave")
    args = parser.parse_args(argv)
    np.random.seed(0)
    torch.manual_seed(0)
    seq = Sequence().double()
    return train(seq, make_waves(args.waves, args.length), args.steps)


if __name__ == "__main__":
    main()
