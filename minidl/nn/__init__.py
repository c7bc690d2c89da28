"""Neural-network building blocks, as torch.nn. ``minidl.nn.functional`` holds the ops."""
from . import functional, init, utils, parallel
from .parameter import Parameter
from .module import Module
from .container import Sequential, ModuleList, ModuleDict
from .linear import Linear, Identity, Flatten, ZeroPad2d, ChannelShuffle
from .conv import Conv1d, Conv2d, ConvTranspose2d, Unfold, Fold
from .pooling import (MaxPool1d, AvgPool1d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, AdaptiveMaxPool2d, Upsample,
                      UpsamplingNearest2d, UpsamplingBilinear2d)
from .sparse import Embedding
from .rnn import RNNBase, RNN, LSTM, GRU, RNNCellBase, RNNCell, LSTMCell, GRUCell
from .normalization import (BatchNorm1d, BatchNorm2d, SyncBatchNorm, InstanceNorm1d, InstanceNorm2d, LayerNorm,
                            GroupNorm)
from .activation import (ReLU, LeakyReLU, GELU, SiLU, Sigmoid, Tanh, Softmax, LogSoftmax, Dropout, Dropout2d, Hardtanh,
                         ReLU6, Hardsigmoid, Hardswish, Mish, Softplus, PReLU)
from .loss import (CrossEntropyLoss, NLLLoss, MSELoss, L1Loss, BCELoss, BCEWithLogitsLoss, HuberLoss, SmoothL1Loss,
                   KLDivLoss)
from .transformer import (MultiheadAttention, TransformerEncoderLayer, TransformerDecoderLayer, TransformerEncoder,
                          TransformerDecoder, Transformer)
from . import modules  # torch.nn.modules' namespace: aliases of the modules above, nothing loaded twice
