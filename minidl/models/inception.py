"""The small GoogLeNet-style net for MNIST built from InceptionA blocks."""
from .. import functional as F
from .. import nn


class InceptionA(nn.Module):
    """Four branches concatenated on channels (16 + 24 + 24 + 24 = 88 out): 1x1; 1x1 -> 5x5; 1x1 -> 3x3 ->
    3x3; 3x3 average pool -> 1x1."""

    out_channels = 88

    def __init__(self, in_channels):
        super().__init__()
        self.branch1x1 = nn.Conv2d(in_channels, 16, 1)
        self.branch5x5_1 = nn.Conv2d(in_channels, 16, 1)
        self.branch5x5_2 = nn.Conv2d(16, 24, 5, padding=2)
        self.branch3x3_1 = nn.Conv2d(in_channels, 16, 1)
        self.branch3x3_2 = nn.Conv2d(16, 24, 3, padding=1)
        self.branch3x3_3 = nn.Conv2d(24, 24, 3, padding=1)
        self.branch_pool = nn.Conv2d(in_channels, 24, 1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3_3(self.branch3x3_2(self.branch3x3_1(x)))
        bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1))
        return F.cat([b1, b5, b3, bp], dim=1)


class InceptionNet(nn.Module):
    """conv(1->10, 5) -> max-pool 2 -> ReLU -> InceptionA(10) -> conv(88->20, 5) -> max-pool 2 -> ReLU ->
    InceptionA(20) -> Linear 1408 -> num_classes. Input (N, in_channels, 28, 28)."""

    def __init__(self, num_classes=10, in_channels=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 10, 5)
        self.conv2 = nn.Conv2d(88, 20, 5)
        self.incep1 = InceptionA(10)
        self.incep2 = InceptionA(20)
        self.fc = nn.Linear(1408, num_classes)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = self.incep1(x)
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = self.incep2(x)
        return self.fc(x.flatten(1))
