"""An LSTM reads each MNIST digit one row of 28 pixels at a time and classifies it from its last hidden state: the
sequence task of pytorch/examples' mnist_rnn, written the way a PyTorch user writes it, with minidl imported as
torch. It trains on the 10,000 MNIST digits bundled with minidl (no download).

    python examples/pytorch_style/mnist_rows_lstm.py            # 3 epochs: 94% test accuracy in 5 s on 2 cores
    python examples/pytorch_style/mnist_rows_lstm.py --epochs 1 --hidden 32 --layers 2
"""
import argparse
import time

import minidl as torch
import minidl.nn as nn
import minidl.nn.functional as F
from minidl.data import datasets, transforms


class RowLSTM(nn.Module):
    def __init__(self, hidden=64, layers=1):
        super().__init__()
        self.lstm = nn.LSTM(input_size=28, hidden_size=hidden, num_layers=layers, batch_first=True)
        self.norm = nn.BatchNorm1d(hidden)
        self.head = nn.Linear(hidden, 10)

    def forward(self, images):                     # (N, 1, 28, 28)
        rows = images.reshape(-1, 28, 28)          # a sequence of 28 rows of 28 pixels per image
        out, (h_n, c_n) = self.lstm(rows)          # out: (N, 28, hidden), the last layer's h at every row
        return self.head(self.norm(out[:, -1]))    # logits from the state after the last row


def evaluate(model, loader):
    model.eval()
    correct = total = 0
    loss = 0.0
    with torch.no_grad():
        for x, y in loader:
            logits = model(x)
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            total += len(y)
    return loss / total, correct / total


def main(argv=None):
    p = argparse.ArgumentParser(description="An LSTM over the rows of MNIST digits (minidl as torch)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dry-run", action="store_true", help="a few batches of one epoch")
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    to_tensor = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train_set = datasets.MNISTSubset(train=True, transform=to_tensor)
    test_set = datasets.MNISTSubset(train=False, transform=to_tensor)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=500)

    model = RowLSTM(args.hidden, args.layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    for epoch in range(1, args.epochs + 1):
        model.train()
        start = time.perf_counter()
        for step, (x, y) in enumerate(train_loader):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            if args.dry_run and step == 4:
                break
        test_loss, accuracy = evaluate(model, test_loader)
        print(f"epoch {epoch}: train loss {loss.item():.4f}, test loss {test_loss:.4f}, "
              f"test accuracy {100 * accuracy:.2f}% ({time.perf_counter() - start:.1f} s)", flush=True)
        if args.dry_run:
            break
    return accuracy


if __name__ == "__main__":
    main()
