"""PyTorch's Hogwild example (github.com/pytorch/examples, mnist_hogwild: main.py and train.py in one file), as its
users type it, with only the imports changed from torch to minidl: one model in shared memory
(``model.share_memory()``), several processes each training it with their own SGD optimizer, lock-free, all their
updates landing in the same weights; then the parent tests the model they trained together.

Two changes, marked below: the data are the 10,000 MNIST digits bundled with minidl (the original downloads MNIST
with torchvision), and each process counts its steps in a shared tensor, which the parent prints (so a run shows that
every process trained the parent's model). With ``import torch`` (and its submodules) in place of minidl's lines it
runs under torch unchanged.

    python examples/pytorch_style/mnist_hogwild.py --epochs 1 --num-processes 2
"""
import argparse
import os

import minidl as torch
import minidl.multiprocessing as mp
import minidl.nn as nn
import minidl.nn.functional as F
import minidl.optim as optim
from minidl.data import MNISTSubset  # changed: torchvision's datasets.MNIST in the original
from minidl.utils.data import DataLoader, TensorDataset


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.view(-1, 320)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, training=self.training)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


def digits(train):
    """The bundled digits as (N, 1, 28, 28) float images normalised as the original's transform does, and labels
    (changed: the original's datasets.MNIST(..., transform=Compose([ToTensor(), Normalize(...)])))."""
    subset = MNISTSubset(train=train)
    images = torch.from_numpy(subset.data.numpy()).float().div(255).sub(0.1307).div(0.3081).unsqueeze(1)
    return TensorDataset(images, torch.from_numpy(subset.targets.numpy()).long())


def train(rank, args, model, device, dataset, dataloader_kwargs, steps):
    """One process's training: its own seed, loader and SGD over the shared model."""
    torch.manual_seed(args.seed + rank)
    train_loader = DataLoader(dataset, **dataloader_kwargs)
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    for epoch in range(1, args.epochs + 1):
        train_epoch(epoch, args, model, device, train_loader, optimizer, steps, rank)


def test(args, model, device, dataset, dataloader_kwargs):
    torch.manual_seed(args.seed)
    test_loader = DataLoader(dataset, **dataloader_kwargs)
    return test_epoch(model, device, test_loader)


def train_epoch(epoch, args, model, device, data_loader, optimizer, steps, rank):
    model.train()
    pid = os.getpid()
    for batch_idx, (data, target) in enumerate(data_loader):
        optimizer.zero_grad()
        output = model(data.to(device))
        loss = F.nll_loss(output, target.to(device))
        loss.backward()
        optimizer.step()
        steps[rank] += 1  # added: this process's steps, counted in shared memory
        if batch_idx % args.log_interval == 0:
            print('{}\tTrain Epoch: {} [{}/{} ({:.0f}%)]\tLoss: {:.6f}'.format(
                pid, epoch, batch_idx * len(data), len(data_loader.dataset),
                100. * batch_idx / len(data_loader), loss.item()))
            if args.dry_run:
                break


def test_epoch(model, device, data_loader):
    model.eval()
    test_loss = 0
    correct = 0
    with torch.no_grad():
        for data, target in data_loader:
            output = model(data.to(device))
            test_loss += F.nll_loss(output, target.to(device), reduction='sum').item()  # sum up batch loss
            pred = output.max(1)[1]  # get the index of the max log-probability
            correct += pred.eq(target.to(device)).sum().item()

    test_loss /= len(data_loader.dataset)
    print('\nTest set: Average loss: {:.4f}, Accuracy: {}/{} ({:.0f}%)\n'.format(
        test_loss, correct, len(data_loader.dataset),
        100. * correct / len(data_loader.dataset)))
    return correct / len(data_loader.dataset)


def main(argv=None):
    # Training settings
    parser = argparse.ArgumentParser(description='PyTorch MNIST Example')
    parser.add_argument('--batch-size', type=int, default=64, metavar='N',
                        help='input batch size for training (default: 64)')
    parser.add_argument('--test-batch-size', type=int, default=1000, metavar='N',
                        help='input batch size for testing (default: 1000)')
    parser.add_argument('--epochs', type=int, default=10, metavar='N',
                        help='number of epochs to train (default: 10)')
    parser.add_argument('--lr', type=float, default=0.01, metavar='LR',
                        help='learning rate (default: 0.01)')
    parser.add_argument('--momentum', type=float, default=0.5, metavar='M',
                        help='SGD momentum (default: 0.5)')
    parser.add_argument('--seed', type=int, default=1, metavar='S',
                        help='random seed (default: 1)')
    parser.add_argument('--log-interval', type=int, default=10, metavar='N',
                        help='how many batches to wait before logging training status')
    parser.add_argument('--num-processes', type=int, default=2, metavar='N',
                        help='how many training processes to use (default: 2)')
    parser.add_argument('--start-method', default='spawn', choices=['spawn', 'fork', 'forkserver'],
                        help='how the processes start (default: spawn, as the original)')
    parser.add_argument('--save_model', action='store_true', default=False,
                        help='save the trained model to state_dict')
    parser.add_argument('--dry-run', action='store_true', default=False,
                        help='quickly check a single pass')
    args = parser.parse_args(argv)

    device = torch.device("cpu")
    dataset1 = digits(train=True)
    dataset2 = digits(train=False)
    kwargs = {'batch_size': args.batch_size,
              'shuffle': True}

    torch.manual_seed(args.seed)
    mp.set_start_method(args.start_method, force=True)

    model = Net().to(device)
    model.share_memory()  # gradients are allocated lazily, so they are not shared here
    steps = torch.zeros(args.num_processes, dtype=torch.int64).share_memory_()  # added: steps per process

    processes = []
    for rank in range(args.num_processes):
        p = mp.Process(target=train, args=(rank, args, model, device,
                                           dataset1, kwargs, steps))
        # We first train the model across `num_processes` processes
        p.start()
        processes.append(p)
    for p in processes:
        p.join()
    print('Steps taken by each process: {}'.format(steps.tolist()))

    if args.save_model:
        torch.save(model.state_dict(), "MNIST_hogwild.pt")

    # Once training is complete, we can test the model
    accuracy = test(args, model, device, dataset2, kwargs)
    return accuracy, steps.tolist()


if __name__ == '__main__':
    main()
