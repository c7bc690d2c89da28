"""BatchNorm1d/2d, InstanceNorm1d/2d, LayerNorm, GroupNorm."""
import numbers

import numpy as np

from .. import functional as F
from ..autograd.creation import ones, zeros, tensor
from ..autograd import no_grad
from ..autograd.capturing import replayed
from ..backend.errors import RuntimeValueError
from . import init
from .module import Module
from .parameter import Parameter


@replayed
def _count_batch(num_batches_tracked):
    """One more batch seen (in place, as torch's ``num_batches_tracked.add_(1)``; a replayed step counts too)."""
    num_batches_tracked._data += 1


class _BatchNorm(Module):
    _dims = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, device=None,
                 dtype=None, *, bias=True):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(ones(num_features, dtype=dtype, device=device))
            if bias:
                self.bias = Parameter(zeros(num_features, dtype=dtype, device=device))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", zeros(num_features, dtype=dtype, device=device))
            self.register_buffer("running_var", ones(num_features, dtype=dtype, device=device))
            self.register_buffer("num_batches_tracked", tensor(0, dtype=np.int64, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        if self.track_running_stats:
            with no_grad():
                self.running_mean.zero_()
                self.running_var.fill_(1)
                self.num_batches_tracked.zero_()

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)

    def forward(self, input):
        name = type(self).__name__
        if input.ndim not in self._dims:
            exp = " or ".join(f"{d}-D" for d in self._dims)
            raise RuntimeValueError(f"{name}: expected {exp} input, got {input.ndim}-D with shape {tuple(input.shape)}")
        if input.shape[1] != self.num_features:
            raise RuntimeValueError(f"{name}: expected {self.num_features} channels (dim 1), got input of shape "
                                    f"{tuple(input.shape)}")
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            _count_batch(self.num_batches_tracked)
            if self.momentum is None:  # cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked.item())
        use_batch = self.training or not self.track_running_stats
        track = not self.training or self.track_running_stats
        return F.batch_norm(input, self.running_mean if track else None, self.running_var if track else None,
                            self.weight, self.bias, use_batch, momentum, self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L) inputs, as torch.nn.BatchNorm1d."""
    _dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W) inputs, as torch.nn.BatchNorm2d."""
    _dims = (4,)


class _InstanceNorm(_BatchNorm):
    """Instance norm: torch's defaults differ from batch norm's (no affine parameters, no running statistics);
    the same parameters and buffers when asked for, so the state_dict keys are torch's."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False, track_running_stats=False, device=None,
                 dtype=None, *, bias=True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias=bias)

    def forward(self, input):
        name = type(self).__name__
        if input.ndim not in self._dims:
            exp = " or ".join(f"{d}-D" for d in self._dims)
            raise RuntimeValueError(f"{name}: expected {exp} input, got {input.ndim}-D with shape {tuple(input.shape)}")
        unbatched = input.ndim == self._dims[0]
        x = input.unsqueeze(0) if unbatched else input
        if x.shape[1] != self.num_features and self.affine:
            raise RuntimeValueError(f"{name}: expected {self.num_features} channels (dim {0 if unbatched else 1}) for "
                                    f"affine=True, got input of shape {tuple(input.shape)}")
        use_input_stats = self.training or not self.track_running_stats  # torch leaves num_batches_tracked at 0
        y = F.instance_norm(x, self.running_mean, self.running_var, self.weight, self.bias, use_input_stats,
                            0.0 if self.momentum is None else self.momentum, self.eps)
        return y.squeeze(0) if unbatched else y


class InstanceNorm1d(_InstanceNorm):
    """Instance norm over (N, C, L) or unbatched (C, L) inputs, as torch.nn.InstanceNorm1d."""
    _dims = (2, 3)


class InstanceNorm2d(_InstanceNorm):
    """Instance norm over (N, C, H, W) or unbatched (C, H, W) inputs, as torch.nn.InstanceNorm2d."""
    _dims = (3, 4)


class SyncBatchNorm(_BatchNorm):
    """Batch norm whose training statistics are those of the global batch across the ranks of
    minidl.distributed (as torch.nn.SyncBatchNorm): with it, N processes train exactly as one process on the
    concatenated batch. In eval mode, or outside a process group, it is BatchNorm. Inputs (N, C, ...)."""
    _dims = (2, 3, 4, 5)

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 process_group=None, device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)

    def forward(self, input):
        from .. import distributed as dist
        if not (self.training and dist.world_size() > 1):
            return super().forward(input)
        if input.ndim not in self._dims or input.shape[1] != self.num_features:
            raise RuntimeValueError(f"SyncBatchNorm: expected (N, {self.num_features}, ...) input, got shape "
                                    f"{tuple(input.shape)}")
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats:
            _count_batch(self.num_batches_tracked)
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked.item())
        from ..functional.normalization import sync_batch_norm
        return sync_batch_norm(input, self.running_mean, self.running_var, self.weight, self.bias, momentum, self.eps)

    @classmethod
    def convert_sync_batchnorm(cls, module, process_group=None):
        """``module`` with every BatchNorm1d/2d replaced by a SyncBatchNorm holding the same parameters and
        buffers (the module itself when it is a batch norm)."""
        if isinstance(module, _BatchNorm) and not isinstance(module, (cls, _InstanceNorm)):
            new = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
            for name in ("weight", "bias"):
                if getattr(module, name, None) is not None:
                    setattr(new, name, getattr(module, name))
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                new.register_buffer(name, getattr(module, name))
            new.train(module.training)
            return new
        for name, child in list(module._modules.items()):
            if child is not None:
                module._modules[name] = cls.convert_sync_batchnorm(child, process_group)
        return module


def _affine_parameters(module, shape, affine, bias, dtype, device):
    """weight (ones) and bias (zeros) of ``shape``, as torch's norms make them; None where switched off."""
    module.register_parameter("weight", Parameter(ones(*shape, dtype=dtype, device=device)) if affine else None)
    module.register_parameter("bias", Parameter(zeros(*shape, dtype=dtype, device=device)) if affine and bias
                              else None)


class LayerNorm(Module):
    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None, dtype=None):
        super().__init__()
        ns = (normalized_shape,) if isinstance(normalized_shape, numbers.Integral) else tuple(normalized_shape)
        self.normalized_shape, self.eps, self.elementwise_affine = ns, eps, elementwise_affine
        _affine_parameters(self, ns, elementwise_affine, bias, dtype, device)

    def forward(self, input):
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class GroupNorm(Module):
    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, device=None, dtype=None, *, bias=True):
        super().__init__()
        if num_channels % num_groups:
            raise RuntimeValueError(f"GroupNorm: num_channels ({num_channels}) must be divisible by num_groups "
                                    f"({num_groups})")
        self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
        _affine_parameters(self, (num_channels,), affine, bias, dtype, device)

    def forward(self, input):
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"
