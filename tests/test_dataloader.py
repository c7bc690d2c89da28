"""DataLoader and samplers against torch.utils.data: lazy iteration (nothing drawn before the first next()), the
same draws from the same generator as torch, indices taken as batches are made, torch's samplers and
default_collate rules, and a training loop whose progress bars change nothing."""
import collections
import importlib
import io
import re
import sys

import numpy as np
import pytest
import torch
import torch.utils.data as tdata

import minidl
from minidl import data, nn, optim, utils
from minidl.data.sampler import draw_seed


def _batches(loader):
    return [b.tolist() if isinstance(b, (minidl.Tensor, torch.Tensor)) else b for b in loader]


def _ints(n):
    return list(range(n))  # a dataset whose samples are their indices, for minidl and torch alike


def test_making_an_iterator_draws_nothing_and_an_epoch_draws_as_torch_does():
    n = 10
    loader = data.DataLoader(_ints(n), batch_size=3, shuffle=True)
    minidl.manual_seed(0)
    before = minidl.get_rng_state().numpy().copy()
    it = iter(loader)
    assert len(it) == 4
    np.testing.assert_array_equal(minidl.get_rng_state().numpy(), before)  # iter() drew nothing
    got = [b.tolist() for b in it]
    # torch's draws, in torch's order: the epoch's base seed (one int64), then the RandomSampler's seed (one
    # int64), which seeds a generator of its own for the permutation; the global generator sees two draws
    minidl.manual_seed(0)
    draw_seed(None, "test")
    seed = draw_seed(None, "test")
    expected = minidl.randperm(n, generator=minidl.Generator().manual_seed(seed)).tolist()
    assert sum(got, []) == expected
    np.testing.assert_array_equal(minidl.get_rng_state().numpy(), _state_after_draws(0, 2))
    torch.manual_seed(0)
    tgot = [b.tolist() for b in tdata.DataLoader(_ints(n), batch_size=3, shuffle=True)]
    torch.manual_seed(0)
    torch.empty((), dtype=torch.int64).random_()
    tseed = int(torch.empty((), dtype=torch.int64).random_().item())
    assert sum(tgot, []) == torch.randperm(n, generator=torch.Generator().manual_seed(tseed)).tolist()
    assert [len(b) for b in got] == [len(b) for b in tgot] == [3, 3, 3, 1]


def _state_after_draws(seed, k):
    minidl.manual_seed(seed)
    for _ in range(k):
        draw_seed(None, "test")
    return minidl.get_rng_state().numpy().copy()


@pytest.mark.parametrize("bar", ["tqdm", "tqdm.auto"])
def test_a_progress_bar_around_the_loader_changes_no_batch(bar):
    """tqdm.auto's bar calls iter(loader) when it is made, and the loop calls it again: the first iterator,
    never advanced, must not have drawn a shuffle."""
    import tqdm
    import tqdm.auto
    make = tqdm.tqdm if bar == "tqdm" else tqdm.auto.tqdm
    loader = data.DataLoader(_ints(20), batch_size=4, shuffle=True)
    minidl.manual_seed(3)
    plain = _batches(loader), _batches(loader)
    minidl.manual_seed(3)
    barred = [b.tolist() for b in make(loader, file=io.StringIO())], _batches(loader)
    assert barred == plain and plain[0] != plain[1]


def test_a_loader_with_its_own_generator_leaves_the_global_one_alone():
    ds = _ints(12)
    minidl.manual_seed(1)
    before = minidl.get_rng_state().numpy().copy()
    orders = [_batches(data.DataLoader(ds, 5, shuffle=True, generator=minidl.Generator().manual_seed(9)))
              for _ in range(2)]
    assert orders[0] == orders[1]
    np.testing.assert_array_equal(minidl.get_rng_state().numpy(), before)
    g = minidl.Generator().manual_seed(9)
    draw_seed(g, "test")  # the base seed, then the permutation, from the loader's generator (torch's order)
    assert sum(orders[0], []) == minidl.randperm(12, generator=g).tolist()


class _Limited(data.Sampler):
    """A sampler that fails once more than ``limit`` indices were taken from it."""

    def __init__(self, sampler, limit):
        self.sampler, self.limit, self.taken = sampler, limit, 0

    def __iter__(self):
        for i in self.sampler:
            self.taken += 1
            if self.taken > self.limit:
                raise RuntimeError(f"the DataLoader took more than {self.limit} indices ahead")
            yield i

    def __len__(self):
        return len(self.sampler)


@pytest.mark.parametrize("workers", [0, 2])
def test_indices_are_taken_as_batches_are_made_even_from_a_sampler_of_10_10(workers):
    ds = data.TensorDataset(minidl.arange(50))
    sampler = _Limited(data.RandomSampler(ds, replacement=True, num_samples=10 ** 10), 64)
    loader = data.DataLoader(ds, batch_size=4, sampler=sampler, num_workers=workers)
    assert len(loader) == 10 ** 10 // 4
    it = iter(loader)
    got = [next(it)[0].tolist() for _ in range(3)]
    assert all(len(b) == 4 and all(0 <= i < 50 for i in b) for b in got)
    assert sampler.taken <= 4 * (3 + 2 * workers)  # three batches, and prefetch_factor per worker ahead
    it.close()


def test_random_sampler_draws_as_torch_s_algorithm():
    """Without replacement one permutation per pass (the last cut), with replacement 32 indices at a time, all
    from the given generator: the same draws as torch's RandomSampler makes from its generator."""
    g = minidl.Generator().manual_seed(5)
    got = list(data.RandomSampler(range(10), num_samples=25, generator=g))
    ref = minidl.Generator().manual_seed(5)
    expected = sum((minidl.randperm(10, generator=ref).tolist() for _ in range(3)), [])[:25]
    assert got == expected
    got = list(data.RandomSampler(range(7), replacement=True, num_samples=70, generator=g.manual_seed(6)))
    ref.manual_seed(6)
    expected = sum((minidl.randint(0, 7, (k,), generator=ref).tolist() for k in (32, 32, 6)), [])
    assert got == expected
    tg = torch.Generator().manual_seed(5)
    assert len(list(tdata.RandomSampler(range(10), num_samples=25, generator=tg))) == 25 == len(got[:25])


@pytest.mark.parametrize("kwargs", [
    dict(batch_size=3), dict(batch_size=3, drop_last=True), dict(batch_size=4, sampler=[9, 0, 8, 1, 7]),
    dict(batch_size=None), dict(batch_size=None, sampler=[3, 1]),
])
def test_batches_of_indices_equal_torch_s(kwargs):
    assert _batches(data.DataLoader(_ints(10), **kwargs)) == _batches(tdata.DataLoader(_ints(10), **kwargs))
    assert len(data.DataLoader(_ints(10), **kwargs)) == len(tdata.DataLoader(_ints(10), **kwargs))


def test_a_batch_sampler_and_torch_s_sampler_classes():
    batches = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert list(data.BatchSampler(data.SequentialSampler(range(10)), 3, False)) == batches
    assert list(data.BatchSampler(range(10), 3, True)) == batches[:3]
    loader = data.DataLoader(_ints(10), batch_sampler=data.BatchSampler(range(10), 3, False))
    assert _batches(loader) == batches and len(loader) == 4
    sub = list(data.SubsetRandomSampler([10, 20, 30], generator=minidl.Generator().manual_seed(1)))
    assert sorted(sub) == [10, 20, 30]

    class Evens(data.Sampler[int]):  # torch programs subclass Sampler[int]
        def __iter__(self):
            return iter(range(0, 10, 2))
    assert _batches(data.DataLoader(_ints(10), batch_size=2, sampler=Evens())) == [[0, 2], [4, 6], [8]]
    from minidl.utils.data.sampler import RandomSampler  # as torch programs import it
    assert RandomSampler is data.RandomSampler and sys.modules["minidl.utils.data.sampler"] is data.sampler
    assert importlib.import_module("minidl.utils.data.dataloader").default_collate is data.default_collate


def test_weighted_random_sampler():
    g = minidl.Generator().manual_seed(0)
    drawn = list(data.WeightedRandomSampler([0.0, 1.0, 0.0, 3.0], 4000, generator=g))
    counts = np.bincount(drawn, minlength=4)
    assert counts[0] == counts[2] == 0 and 2.7 < counts[3] / counts[1] < 3.3
    assert sorted(data.WeightedRandomSampler(minidl.tensor([0.0, 1.0, 0.0, 3.0]), 2, replacement=False)) == [1, 3]
    with pytest.raises(ValueError, match="WeightedRandomSampler: cannot draw 3 samples without replacement"):
        list(data.WeightedRandomSampler([0.0, 1.0, 0.0, 3.0], 3, replacement=False))
    with pytest.raises(ValueError, match="WeightedRandomSampler: weights must be finite and non-negative"):
        list(data.WeightedRandomSampler([1.0, -1.0], 1))


@pytest.mark.parametrize("make, error, message", [
    (lambda m: m.RandomSampler(range(3), replacement=1), TypeError, "replacement should be a boolean value"),
    (lambda m: m.RandomSampler(range(3), num_samples=0), ValueError, "num_samples should be a positive integer"),
    (lambda m: m.RandomSampler([]), ValueError, "num_samples should be a positive integer"),
    (lambda m: m.BatchSampler(range(3), 0, False), ValueError, "batch_size should be a positive integer"),
    (lambda m: m.BatchSampler(range(3), 2, "no"), ValueError, "drop_last should be a boolean value"),
    (lambda m: m.WeightedRandomSampler([1.0], 0), ValueError, "num_samples should be a positive integer"),
    (lambda m: m.WeightedRandomSampler([[1.0]], 1), ValueError, "weights should be a 1d sequence"),
    (lambda m: m.DataLoader(range(3), batch_size=2, batch_sampler=[[0]]), ValueError,
     "batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, and drop_last"),
    (lambda m: m.DataLoader(range(3), batch_size=None, drop_last=True), ValueError,
     "batch_size=None option disables auto-batching and is mutually exclusive with drop_last"),
])
def test_bad_sampler_arguments_are_refused_as_torch_refuses_them(make, error, message):
    with pytest.raises(error, match=re.escape(message)):
        make(tdata)
    with pytest.raises(error, match=re.escape(message)) as info:
        make(data)
    assert str(info.value).split(":")[0] in ("RandomSampler", "BatchSampler", "WeightedRandomSampler", "DataLoader")


Point = collections.namedtuple("Point", "x y")


def _as_torch(sample):
    if isinstance(sample, np.ndarray):
        return sample
    if isinstance(sample, tuple) and hasattr(sample, "_fields"):
        return type(sample)(*map(_as_torch, sample))
    if isinstance(sample, (tuple, list)):
        return type(sample)(map(_as_torch, sample))
    if isinstance(sample, dict):
        return type(sample)((k, _as_torch(v)) for k, v in sample.items())
    return sample


def _assert_same(got, ref, where="batch"):
    if isinstance(ref, torch.Tensor):
        assert isinstance(got, minidl.Tensor), f"{where}: {type(got).__name__}, torch makes a tensor"
        assert str(got.dtype).replace("minidl.", "") == str(ref.dtype).replace("torch.", ""), where
        np.testing.assert_array_equal(got.numpy(), ref.numpy(), err_msg=where)
        return
    assert type(got) is type(ref), f"{where}: {type(got).__name__}, torch makes a {type(ref).__name__}"
    if isinstance(ref, dict):
        assert list(got) == list(ref), where
        for k in ref:
            _assert_same(got[k], ref[k], f"{where}[{k!r}]")
    elif isinstance(ref, (list, tuple)):
        assert len(got) == len(ref), where
        for k, (a, b) in enumerate(zip(got, ref)):
            _assert_same(a, b, f"{where}[{k}]")
    else:
        assert got == ref, where


@pytest.mark.parametrize("samples", [
    [(np.ones(2, np.float32), 1), (np.zeros(2, np.float32), 0)],     # a tuple: a list of batched fields
    [[1, 2.5], [3, 4.5]],                                             # int -> int64, float -> float64
    [Point(1, True), Point(2, False)],                                # a named tuple stays one; bool -> bool
    [{"a": np.float32(1), "b": "x"}, {"a": np.float32(2), "b": "y"}],  # NumPy scalars keep their dtype; str
    [collections.OrderedDict(k=(1, 2)), collections.OrderedDict(k=(3, 4))],
    [np.int32(1), np.int32(2)],
])
def test_default_collate_follows_torch_s_rules(samples):
    _assert_same(data.default_collate(samples), tdata.default_collate(_as_torch(samples)))


def test_default_collate_refuses_what_torch_refuses():
    with pytest.raises(RuntimeError, match="each element in list of batch should be of equal size"):
        data.default_collate([(1, 2), (3,)])
    with pytest.raises(ValueError, match="^default_collate: each element"):
        data.default_collate([(1, 2), (3,)])
    with pytest.raises(TypeError, match="default_collate: batch must contain tensors"):
        data.default_collate([object(), object()])


def test_a_tensor_dataset_loads_lists_as_torch_and_its_subsets_take_the_fast_path():
    x, y = np.arange(20, dtype=np.float32).reshape(10, 2), np.arange(10)
    batch = next(iter(data.DataLoader(data.TensorDataset(minidl.tensor(x), minidl.tensor(y)), batch_size=4)))
    tbatch = next(iter(tdata.DataLoader(tdata.TensorDataset(torch.tensor(x), torch.tensor(y)), batch_size=4)))
    _assert_same(batch, tbatch)
    sub = data.Subset(data.TensorDataset(minidl.tensor(x), minidl.tensor(y)), [7, 3, 5])
    fast = next(iter(data.DataLoader(sub, batch_size=3)))
    slow = next(iter(data.DataLoader(sub, batch_size=3, collate_fn=data.default_collate)))
    _assert_same(fast, [torch.tensor(x[[7, 3, 5]]), torch.tensor(y[[7, 3, 5]])])
    _assert_same(slow, [torch.tensor(x[[7, 3, 5]]), torch.tensor(y[[7, 3, 5]])])


def test_the_distributed_sampler_is_a_sampler_and_shards_one_shuffle():
    ds = _ints(11)
    shards = []
    for rank in range(3):
        s = data.DistributedSampler(ds, num_replicas=3, rank=rank, seed=4)
        s.set_epoch(2)
        shards.append(list(s))
    assert isinstance(s, data.Sampler) and [len(sh) for sh in shards] == [4, 4, 4]
    order = minidl.randperm(11, generator=minidl.Generator().manual_seed(6)).tolist()
    order += order[:1]  # padded by the first index, as torch
    assert shards == [order[r::3] for r in range(3)]


def _fit(progress, epochs=2):
    minidl.manual_seed(0)
    x = minidl.randn(48, 1, 6, 6)
    y = minidl.randint(0, 3, (48,))
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
    opt = optim.SGD(model.parameters(), lr=0.1)
    loader = data.DataLoader(data.TensorDataset(x, y), batch_size=8, shuffle=True)
    history = utils.fit(model, loader, data.DataLoader(data.TensorDataset(x, y), 16), opt, nn.CrossEntropyLoss(),
                        epochs, progress=progress, log=None)
    return model, history


def test_progress_bars_change_no_weight_and_show_the_count_with_the_postfix(monkeypatch):
    bars = io.StringIO()
    monkeypatch.setattr(sys, "stderr", bars)
    import tqdm
    init = tqdm.tqdm.__init__

    def every_step(self, *args, **kwargs):  # draw every step (tqdm reads TQDM_MININTERVAL at import only)
        init(self, *args, **{**kwargs, "mininterval": 0})
    monkeypatch.setattr(tqdm.tqdm, "__init__", every_step)
    with_bars, h1 = _fit(True)
    without, h2 = _fit(False)
    for (k, a), b in zip(with_bars.state_dict().items(), without.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)
    assert h1["train_loss"] == h2["train_loss"]
    renders = [r for r in re.split(r"[\r\n]", bars.getvalue()) if "loss=" in r]
    counts = [tuple(map(int, re.search(r"\|\s*(\d+)/(\d+) \[", r).groups())) for r in renders]
    assert counts and all(n >= 1 for n, _ in counts), renders[:3]  # never a stale 0/N beside a loss
    assert (6, 6) in counts

