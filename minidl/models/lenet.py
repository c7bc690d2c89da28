"""LeNet-5 for 28x28 digits."""
from .. import functional as F
from .. import nn


class LeNet5(nn.Module):
    """conv(1->6, 5, padding 2) -> ReLU -> max-pool 2 -> conv(6->16, 5) -> ReLU -> max-pool 2 ->
    Linear 400->120 -> ReLU -> 84 -> ReLU -> num_classes. Input (N, in_channels, 28, 28)."""

    def __init__(self, num_classes=10, in_channels=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.flatten(1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))
