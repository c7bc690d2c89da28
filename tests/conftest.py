import os
import sys

sys.path.insert(0, os.path.dirname(__file__))  # tests import opinfo.py and suite.py as modules
# The tuner's choices stay in each test process (and the processes tests start): a choice stored by an earlier run
# would skip the trials that tests count. tests/test_tuning_cache.py turns the disk on in a folder of its own.
os.environ.setdefault("MINIDL_AUTOTUNE_CACHE", "0")


def pytest_addoption(parser):
    parser.addoption("--exhaustive", action="store_true",
                     help="every op sample in both dtypes, every model twin in train/eval and float32/float64, "
                          "every torch sample, the full CUDA-simulator sweep, the examples at their defaults "
                          "(tests/suite.py)")


def pytest_configure(config):
    config.addinivalue_line("markers", "exhaustive: only in the exhaustive run (pytest --exhaustive)")
    if config.getoption("--exhaustive"):
        os.environ["MINIDL_TEST_EXHAUSTIVE"] = "1"  # read by tests/suite.py when the test modules are collected
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # pytest -n 2 runs two workers on two cores: torch's two OpenMP threads per worker, four spinning threads
        # on two cores, made its small ops wait for a descheduled thread (torch's max_pool2d samples: 0.9 s alone,
        # 4.1 s next to one busy core, 0.8 s there with one thread). minidl first, so that it sees NumPy unloaded.
        import minidl  # noqa: F401
        import torch
        torch.set_num_threads(1)


def pytest_report_header(config):
    import suite
    return ("minidl: exhaustive run" if suite.EXHAUSTIVE else
            "minidl: default run, a fixed sample budget per op-table row (tests/suite.py); --exhaustive runs all")


def pytest_collection_modifyitems(config, items):
    import suite
    if suite.EXHAUSTIVE:
        return
    skipped = [it for it in items if it.get_closest_marker("exhaustive")]
    if skipped:
        config.hook.pytest_deselected(items=skipped)
        items[:] = [it for it in items if not it.get_closest_marker("exhaustive")]
