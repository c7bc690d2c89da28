"""The seed models: LeNet-5, the small Inception net, residual networks and DenseNet-BC; and torchvision's
MobileNetV2, ShuffleNetV2, GoogLeNet, VGG and ResNet-50/101/152, with torchvision's names and keys."""
from .lenet import LeNet5
from .inception import InceptionA, InceptionNet
from .resnet import (ResidualBlock, ResidualNet, BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50,
                     resnet101, resnet152, PreActBlock, PreActResNet, preact_resnet18)
from .densenet import DenseNet, densenet_bc
from .mobilenet import MobileNetV2, mobilenet_v2
from .shufflenet import ShuffleNetV2, shufflenet_v2_x0_5, shufflenet_v2_x1_0
from .googlenet import GoogLeNet, GoogLeNetOutputs, googlenet
from .vgg import VGG, vgg11, vgg11_bn, vgg16, vgg16_bn
