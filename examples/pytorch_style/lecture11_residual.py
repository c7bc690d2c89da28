"""The PyTorch course's lecture-11 residual-block net on MNIST, as students type it in current PyTorch (logits
and CrossEntropyLoss), with only the imports changed to minidl. Its data loading and test loop are the
Inception script's (lecture11_inception.py: the bundled digits offline, --epochs / --max-batches).

    python examples/pytorch_style/lecture11_residual.py --epochs 1
"""
import argparse
import minidl as torch
import minidl.nn as nn
import minidl.nn.functional as F
import minidl.optim as optim
from lecture11_inception import load_data, test


class ResidualBlock(nn.Module):
    def __init__(self, channels):
        super(ResidualBlock, self).__init__()
        self.channels = channels
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x):
        y = F.relu(self.conv1(x))
        y = self.conv2(y)
        return F.relu(x + y)


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=5)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=5)
        self.mp = nn.MaxPool2d(2)

        self.rblock1 = ResidualBlock(16)
        self.rblock2 = ResidualBlock(32)

        self.fc = nn.Linear(512, 10)

    def forward(self, x):
        in_size = x.size(0)
        x = self.mp(F.relu(self.conv1(x)))
        x = self.rblock1(x)
        x = self.mp(F.relu(self.conv2(x)))
        x = self.rblock2(x)
        x = x.view(in_size, -1)
        x = self.fc(x)
        return x


if __name__ == '__main__':
    parser = argparse.ArgumentParser()
    parser.add_argument('--epochs', type=int, default=10)
    parser.add_argument('--max-batches', type=int, default=0)
    args = parser.parse_args()
    train_loader, test_loader = load_data()
    model = Net()
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    for epoch in range(1, args.epochs + 1):
        running_loss = 0.0
        for batch_idx, (inputs, target) in enumerate(train_loader, 0):
            optimizer.zero_grad()
            outputs = model(inputs)
            loss = criterion(outputs, target)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            if batch_idx % 300 == 299:
                print('[%d, %5d] loss: %.3f' % (epoch, batch_idx + 1, running_loss / 300))
                running_loss = 0.0
            if args.max_batches and batch_idx + 1 >= args.max_batches:  # (not in the lecture) a short run
                break
        test(nn.Sequential(model, nn.LogSoftmax(dim=1)), test_loader)  # (the shared test loop takes log-probabilities)
