"""The program of PyTorch's quickstart tutorial (a dataset, a DataLoader, a small fully connected network, the
train and test loops, saving and loading the weights, one prediction), written the way its readers type it with
minidl imported as torch. One line differs from a torch program: the dataset. The tutorial downloads
Fashion-MNIST; this reads the 10,000 MNIST digits bundled with minidl, so it runs offline.

    python examples/pytorch_style/quickstart.py                 # 5 epochs of SGD at lr 1e-3, as the tutorial
    python examples/pytorch_style/quickstart.py --epochs 2 --lr 0.05
"""
import argparse
import os
import tempfile

import minidl as torch
from minidl import nn
from minidl.data import datasets
from minidl.data.transforms import ToTensor
from minidl.utils.data import DataLoader


class NeuralNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(28 * 28, 512),
            nn.ReLU(),
            nn.Linear(512, 512),
            nn.ReLU(),
            nn.Linear(512, 10),
        )

    def forward(self, x):
        x = self.flatten(x)
        logits = self.linear_relu_stack(x)
        return logits


def train(dataloader, model, loss_fn, optimizer, device, dry_run=False):
    size = len(dataloader.dataset)
    model.train()
    for batch, (X, y) in enumerate(dataloader):
        X, y = X.to(device), y.to(device)
        pred = model(X)
        loss = loss_fn(pred, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if batch % 50 == 0:
            loss, current = loss.item(), (batch + 1) * len(X)
            print(f"loss: {loss:>7f}  [{current:>5d}/{size:>5d}]")
        if dry_run and batch == 4:
            break


def test(dataloader, model, loss_fn, device):
    size = len(dataloader.dataset)
    num_batches = len(dataloader)
    model.eval()
    test_loss, correct = 0, 0
    with torch.no_grad():
        for X, y in dataloader:
            X, y = X.to(device), y.to(device)
            pred = model(X)
            test_loss += loss_fn(pred, y).item()
            correct += (pred.argmax(1) == y).type(torch.float).sum().item()
    test_loss /= num_batches
    correct /= size
    print(f"Test Error: \n Accuracy: {(100 * correct):>0.1f}%, Avg loss: {test_loss:>8f} \n")
    return correct


def main(argv=None):
    p = argparse.ArgumentParser(description="PyTorch's quickstart program, minidl as torch")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dry-run", action="store_true", help="a few batches of one epoch")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)

    # the dataset lines: the tutorial has datasets.FashionMNIST(root="data", train=..., download=True, ...)
    training_data = datasets.MNISTSubset(train=True, transform=ToTensor())
    test_data = datasets.MNISTSubset(train=False, transform=ToTensor())
    train_dataloader = DataLoader(training_data, batch_size=args.batch_size, shuffle=True)
    test_dataloader = DataLoader(test_data, batch_size=args.batch_size)
    for X, y in test_dataloader:
        print(f"Shape of X [N, C, H, W]: {X.shape}")
        print(f"Shape of y: {y.shape} {y.dtype}")
        break

    device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    print(f"Using {device} device")
    model = NeuralNetwork().to(device)
    print(model)

    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    for t in range(args.epochs):
        print(f"Epoch {t + 1}\n-------------------------------")
        train(train_dataloader, model, loss_fn, optimizer, device, args.dry_run)
        accuracy = test(test_dataloader, model, loss_fn, device)
        if args.dry_run:
            break
    print("Done!")

    with tempfile.TemporaryDirectory() as folder:  # the tutorial writes model.pth next to itself
        path = os.path.join(folder, "model.pth")
        torch.save(model.state_dict(), path)
        print("Saved PyTorch Model State to model.pth")
        model = NeuralNetwork().to(device)
        model.load_state_dict(torch.load(path, weights_only=True))

    classes = [str(digit) for digit in range(10)]
    model.eval()
    x, y = test_data[0][0], test_data[0][1]
    with torch.no_grad():
        x = x.to(device)
        pred = model(x)
        predicted, actual = classes[pred[0].argmax(0)], classes[y]
        print(f'Predicted: "{predicted}", Actual: "{actual}"')
    return accuracy, test(test_dataloader, model, loss_fn, device)


if __name__ == "__main__":
    main()
