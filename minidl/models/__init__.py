"""The seed models: LeNet-5, the small Inception net, residual networks and DenseNet-BC."""
from .lenet import LeNet5
from .inception import InceptionA, InceptionNet
from .resnet import (ResidualBlock, ResidualNet, BasicBlock, ResNet, resnet18, resnet34, PreActBlock, PreActResNet,
                     preact_resnet18)
from .densenet import DenseNet, densenet_bc
