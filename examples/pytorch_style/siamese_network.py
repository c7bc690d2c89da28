"""A siamese network that says whether two digits are the same, the program of pytorch/examples'
siamese_network written the way a PyTorch user writes it, with minidl imported as torch and the torchvision idioms
it relies on:
- a torchvision ResNet-18 built with ``weights=None``, its first convolution re-assigned for one channel,
  and its classifier cut off with ``nn.Sequential(*list(resnet.children())[:-1])``;
- the two images' features side by side into a small head with a sigmoid, binary cross-entropy, Adadelta and
  StepLR;
- pairs drawn from ``torch.where(targets == k)``: with probability 1/2 the same class, else another.
One line differs from a torch program: the dataset (the 10,000 MNIST digits bundled with minidl, so it runs
offline). ResNet-18 on 28x28 images is heavy for a CPU: an epoch of 8,000 pairs takes minutes on two cores.

    python examples/pytorch_style/siamese_network.py --epochs 1
    python examples/pytorch_style/siamese_network.py --max-batches 30   # a short run
"""
import argparse

import minidl as torch
import minidl.nn as nn
import minidl.nn.functional as F
import minidl.optim as optim
import minidl.models as models
from minidl.data import datasets, transforms
from minidl.optim.lr_scheduler import StepLR
from minidl.utils.data import Dataset


class SiameseNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.resnet = models.resnet18(weights=None)
        # one input channel instead of three; the re-assigned conv1 keeps its place among the children
        self.resnet.conv1 = nn.Conv2d(1, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False)
        self.fc_in_features = self.resnet.fc.in_features
        self.resnet = nn.Sequential(*(list(self.resnet.children())[:-1]))  # everything but the classifier
        self.fc = nn.Sequential(
            nn.Linear(self.fc_in_features * 2, 256),
            nn.ReLU(inplace=True),
            nn.Linear(256, 1),
        )
        self.sigmoid = nn.Sigmoid()
        self.resnet.apply(self.init_weights)
        self.fc.apply(self.init_weights)

    def init_weights(self, m):
        if isinstance(m, nn.Linear):
            torch.nn.init.xavier_uniform_(m.weight)
            m.bias.data.fill_(0.01)

    def forward_once(self, x):
        output = self.resnet(x)
        return output.view(output.size()[0], -1)

    def forward(self, input1, input2):
        output = torch.cat((self.forward_once(input1), self.forward_once(input2)), 1)
        return self.sigmoid(self.fc(output))


class PairsOfDigits(Dataset):
    """Image i and a partner: with probability 1/2 a random image of the same digit (target 1), else one of a
    random other digit (target 0). Test pairs are drawn once, with a fixed generator."""

    def __init__(self, train):
        self.dataset = datasets.MNISTSubset(train=train)
        self.train = train
        self.normalize = transforms.Normalize((0.1307,), (0.3081,))
        self.images = self.dataset.data.float().unsqueeze(1) / 255.0
        self.grouped = {k: torch.where(self.dataset.targets == k)[0] for k in range(10)}
        if not train:
            generator = torch.Generator().manual_seed(0)
            self.pairs = [self._pair(i, generator) for i in range(len(self))]

    def __len__(self):
        return len(self.dataset)

    def _pick(self, digit, generator):
        members = self.grouped[digit]
        return members[torch.randint(0, len(members), (1,), generator=generator)].item()

    def _pair(self, index, generator):
        digit = self.dataset.targets[index].item()
        if torch.randint(0, 2, (1,), generator=generator).item():
            return index, self._pick(digit, generator), 1.0
        other = (digit + torch.randint(1, 10, (1,), generator=generator).item()) % 10
        return index, self._pick(other, generator), 0.0

    def __getitem__(self, index):
        i, j, target = self.pairs[index] if not self.train else self._pair(index, None)
        return self.normalize(self.images[i]), self.normalize(self.images[j]), torch.tensor(target)


def train(args, model, device, train_loader, optimizer, epoch):
    model.train()
    criterion = nn.BCELoss()
    losses = []
    for batch_idx, (images_1, images_2, targets) in enumerate(train_loader):
        images_1, images_2, targets = images_1.to(device), images_2.to(device), targets.to(device)
        optimizer.zero_grad()
        outputs = model(images_1, images_2).squeeze()
        loss = criterion(outputs, targets)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if batch_idx % args.log_interval == 0:
            print(f"Train Epoch: {epoch} [{batch_idx * len(images_1)}/{len(train_loader.dataset)} "
                  f"({100. * batch_idx / len(train_loader):.0f}%)]\tLoss: {loss.item():.6f}", flush=True)
        if batch_idx + 1 == args.max_batches:
            break
    return losses


def test(model, device, test_loader, max_batches=0):
    model.eval()
    test_loss = correct = seen = 0
    with torch.no_grad():
        for batch_idx, (images_1, images_2, targets) in enumerate(test_loader):
            images_1, images_2, targets = images_1.to(device), images_2.to(device), targets.to(device)
            outputs = model(images_1, images_2).squeeze()
            test_loss += F.binary_cross_entropy(outputs, targets, reduction="sum").item()
            pred = torch.where(outputs > 0.5, 1, 0)  # 1 for the same digit
            correct += pred.eq(targets.view_as(pred)).sum().item()
            seen += len(targets)
            if batch_idx + 1 == max_batches:
                break
    print(f"\nTest set: Average loss: {test_loss / seen:.4f}, Accuracy: {correct}/{seen} "
          f"({100. * correct / seen:.0f}%)\n")
    return correct / seen


def main(argv=None):
    p = argparse.ArgumentParser(description="Siamese network on pairs of MNIST digits (minidl as torch)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--test-batch-size", type=int, default=500)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=1.0)
    p.add_argument("--gamma", type=float, default=0.7)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--log-interval", type=int, default=10)
    p.add_argument("--max-batches", type=int, default=0, help="batches per epoch, and test batches (0: all)")
    p.add_argument("--dry-run", action="store_true", help="two batches of one epoch")
    args = p.parse_args(argv)
    if args.dry_run:
        args.max_batches, args.epochs = 2, 1
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    train_loader = torch.utils.data.DataLoader(PairsOfDigits(train=True), batch_size=args.batch_size, shuffle=True)
    test_loader = torch.utils.data.DataLoader(PairsOfDigits(train=False), batch_size=args.test_batch_size)
    model = SiameseNetwork().to(device)
    optimizer = optim.Adadelta(model.parameters(), lr=args.lr)
    scheduler = StepLR(optimizer, step_size=1, gamma=args.gamma)
    for epoch in range(1, args.epochs + 1):
        losses = train(args, model, device, train_loader, optimizer, epoch)
        accuracy = test(model, device, test_loader, args.max_batches and 2)
        scheduler.step()
    return losses, accuracy


if __name__ == "__main__":
    main()
