"""Compare a minidl function with a torch one: forward values and input gradients."""
import numpy as np

from .. import backend
from ..autograd import Tensor, grad as autograd_grad
from ..autograd.creation import as_tensor


def _to_numpy(v):
    if isinstance(v, Tensor):
        return backend.to_device(v._data, "cpu")
    if type(v).__module__.startswith("torch"):
        return v.detach().cpu().numpy()
    return np.asarray(v)


def _flat(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def assert_matches_torch(fn, torch_fn, inputs, *, grad=True, requires_grad=None, rtol=None, atol=None, seed=0,
                         device="cpu", before=None):
    """Run ``fn`` on minidl tensors and ``torch_fn`` on torch tensors made from the same ``inputs``;
    assert equal outputs and, with a random upstream gradient, equal gradients for every floating input.

    Args:
        inputs: a sequence of NumPy arrays (each becomes a tensor; floating ones require grad) and other
            values (passed through unchanged to both functions).
        requires_grad: one bool per input (default: every floating array requires grad).
        rtol, atol: default to 1e-4/1e-5 for float32 and 1e-7/1e-9 for float64 inputs.
        before: called before each of the two functions runs (to seed random ops alike).
    Returns (minidl outputs, torch outputs).
    """
    import torch
    arrays = [v for v in inputs if isinstance(v, np.ndarray)]
    wide = any(a.dtype == np.float64 for a in arrays)
    rtol = rtol if rtol is not None else (1e-7 if wide else 1e-4)
    atol = atol if atol is not None else (1e-9 if wide else 1e-5)
    m_in, t_in = [], []
    for k, v in enumerate(inputs):
        if isinstance(v, np.ndarray):
            want = v.dtype.kind == "f" and grad and (requires_grad is None or requires_grad[k])
            m_in.append(as_tensor(v, device=device).requires_grad_(want))  # keeps non-contiguous views as they are
            t_in.append(torch.tensor(v, requires_grad=want))
        else:
            m_in.append(v)
            t_in.append(v)
    if before:
        before()
    m_out = _flat(fn(*m_in))
    if before:
        before()
    t_out = _flat(torch_fn(*t_in))
    _compare_outputs(m_out, t_out, rtol, atol)
    if not grad:
        return m_out, t_out
    rng = np.random.default_rng(seed)
    pairs = [(a, b) for a, b in zip(m_out, t_out) if isinstance(a, Tensor) and a.requires_grad]
    m_leaves = [t for t in m_in if isinstance(t, Tensor) and t.requires_grad]
    t_leaves = [t for t in t_in if isinstance(t, torch.Tensor) and t.requires_grad]
    for k, (_, b) in enumerate(pairs):
        if not b.requires_grad:
            raise AssertionError(f"output {k}: minidl's requires grad, torch's does not")
    if not pairs or not m_leaves:
        return m_out, t_out
    ups = [rng.uniform(-2, 2, size=a.shape).astype(a.dtype) for a, _ in pairs]
    m_grads = autograd_grad([a for a, _ in pairs], m_leaves, [as_tensor(u, device=device) for u in ups],
                            allow_unused=True)
    t_grads = torch.autograd.grad([b for _, b in pairs], t_leaves, [torch.tensor(u) for u in ups],
                                  allow_unused=True)
    _compare_grads(m_grads, t_grads, rtol, atol)
    return m_out, t_out


def _compare_outputs(m_out, t_out, rtol, atol):
    if len(m_out) != len(t_out):
        raise AssertionError(f"minidl returned {len(m_out)} outputs, torch {len(t_out)}")
    for k, (a, b) in enumerate(zip(m_out, t_out)):
        a, b = _to_numpy(a), _to_numpy(b)
        if a.shape != b.shape:
            raise AssertionError(f"output {k}: minidl shape {a.shape}, torch shape {b.shape}")
        if a.dtype.kind in "biu" or b.dtype.kind in "biu":
            np.testing.assert_array_equal(a, b, err_msg=f"forward output {k}")
        else:
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"forward output {k}")


def _compare_grads(m_grads, t_grads, rtol, atol):
    """Where torch has no gradient minidl's must be absent or zero; elsewhere equal (an absent one as zeros)."""
    for k, (a, b) in enumerate(zip(m_grads, t_grads)):
        if b is None:
            if a is not None and np.any(_to_numpy(a) != 0):
                raise AssertionError(f"input {k}: minidl has a non-zero gradient, torch none")
            continue
        a_np = np.zeros(tuple(b.shape)) if a is None else _to_numpy(a)
        np.testing.assert_allclose(a_np, _to_numpy(b), rtol=rtol, atol=atol, err_msg=f"gradient of input {k}")
