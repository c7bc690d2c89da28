"""Embedding: a lookup table of learnable rows, as torch.nn.Embedding."""
from .. import functional as F
from ..autograd.creation import empty
from ..backend.errors import RuntimeValueError
from . import init
from .module import Module
from .parameter import Parameter


class Embedding(Module):
    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, sparse=False, _weight=None, _freeze=False, device=None, dtype=None):
        super().__init__()
        if max_norm is not None or scale_grad_by_freq or sparse:
            raise RuntimeValueError("Embedding: max_norm, scale_grad_by_freq and sparse are not supported by minidl")
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise RuntimeValueError(f"Embedding: padding_idx {padding_idx} is out of range for {num_embeddings} "
                                        "rows")
            padding_idx %= num_embeddings
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        if _weight is None:
            self.weight = Parameter(empty(num_embeddings, embedding_dim, dtype=dtype, device=device))
            self.reset_parameters()
        else:
            if tuple(_weight.shape) != (num_embeddings, embedding_dim):
                raise RuntimeValueError(f"Embedding: _weight has shape {tuple(_weight.shape)}, expected "
                                        f"{(num_embeddings, embedding_dim)}")
            self.weight = Parameter(_weight)
        self.weight.requires_grad_(not _freeze)

    def reset_parameters(self):
        init.normal_(self.weight)  # N(0, 1), as torch; the padding row zeroed
        if self.padding_idx is not None:
            self.weight._data[self.padding_idx] = 0

    def forward(self, input):
        return F.embedding(input, self.weight, self.padding_idx)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}" + (
            f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")
