"""What the default test run covers, and what waits for the exhaustive run.

The default run (the README's command, and CI) must fit 4 minutes on 2 idle cores and finish on a busy machine,
so it covers every op-table row, every model, every example and every kernel on a fixed budget:

- op table: every sample goes through forward, backward and the float64 gradcheck against torch, each sample in
  one dtype (float32 and float64 alternate from sample to sample; a row with one sample gets both); the rule
  tests (NaN, second backward, 0-d/empty inputs, layouts, double backward, the strict device) take the first
  ``RULE_SAMPLES`` samples of each row;
- models: every model against its torch twin in float64 training mode (gradients and running statistics), the
  seed nets in float32 too; eval mode and float32 of the large models are exhaustive;
- torch's own OpInfo samples: the first ``TORCH_SAMPLES`` of each op; kernels' property tests: fewer examples;
- examples: each runs, on a short schedule.

``pytest --exhaustive`` (or ``MINIDL_TEST_EXHAUSTIVE=1``) runs all of it: every sample in both dtypes, both modes
and dtypes of every twin, every torch sample, the full CUDA-simulator sweep and the examples at their defaults.
"""
import os

import numpy as np
import pytest

EXHAUSTIVE = os.environ.get("MINIDL_TEST_EXHAUSTIVE") == "1"
RULE_SAMPLES = 2
TORCH_SAMPLES = 12

# a whole test that only the exhaustive run takes (tests/conftest.py deselects it otherwise)
exhaustive = pytest.mark.exhaustive


def examples(n):
    """Hypothesis examples for a property test: ``n`` in the exhaustive run, a fifth (at least 4) otherwise."""
    return n if EXHAUSTIVE else max(4, n // 5)


def rule_cases(cases, budget=RULE_SAMPLES):
    """The op-table cases a rule test takes: all, or the first ``budget`` samples of each row."""
    return list(cases) if EXHAUSTIVE else [c for c in cases if c[2] < budget]


def _keeps(k, i, n, both=False):
    """Whether item ``k`` runs in the ``i``-th of ``n`` dtypes: all of them in the exhaustive run (or with ``both``),
    else one, alternating with k."""
    return EXHAUSTIVE or both or k % n == i


def dtype_cases(cases, dtypes=(np.float32, np.float64)):
    """(case..., dtype) for every case: in both dtypes, or (by default) in one, alternating by sample index, with
    both for a row's only sample. Ids are '<case id>-<dtype>'."""
    counts = {}
    for c in cases:
        counts[c[1].id] = counts.get(c[1].id, 0) + 1
    return [pytest.param(*c, dt, id=f"{c[0]}-{np.dtype(dt).name}") for c in cases for i, dt in enumerate(dtypes)
            if _keeps(c[2], i, len(dtypes), both=counts[c[1].id] == 1)]


def one_dtype_each(values, dtypes=(np.float32, np.float64)):
    """pytest params (value, dtype): each value in one dtype, alternating (both in the exhaustive run)."""
    return [pytest.param(v, dt) for k, v in enumerate(values) for i, dt in enumerate(dtypes)
            if _keeps(k, i, len(dtypes))]
