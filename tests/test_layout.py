"""The package's shape as DESIGN.md describes it: imports go down the layers (no circle, nothing imports from a
layer above its own but the package face minidl/__init__.py), every kernel module fulfils the kernel contract."""
import ast
import os

import minidl

ROOT = os.path.dirname(minidl.__file__)
# lower imports from nothing above it; one rank may import from a lower rank only
RANKS = {"_process": 0, "backend": 0, "accelerator": 1, "kernels": 1, "autograd": 1, "distributed": 2, "testing": 2,
         "backends": 2, "profiler": 2, "amp": 2,
         "data": 3, "optim": 3, "functional": 3, "nn": 4, "models": 5, "utils": 5, "multiprocessing": 5,
         "onnx": 6, "serialization": 6, "compiler": 5}


def _imports():
    """(importing package, imported package, file) for every import of a minidl module, lazy ones included."""
    for folder, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".py"):
                continue
            path = os.path.join(folder, f)
            parts = ["minidl"] + os.path.relpath(path, ROOT)[:-3].split(os.sep)
            package = parts[1]
            here = parts[:-1]  # the package this file is in
            for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
                if isinstance(node, ast.ImportFrom) and node.level:
                    base = here[:len(here) - (node.level - 1)]
                    targets = [base + node.module.split(".")] if node.module else [base + [a.name] for a in node.names]
                elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("minidl"):
                    targets = [node.module.split(".")]
                elif isinstance(node, ast.Import):
                    targets = [a.name.split(".") for a in node.names if a.name.startswith("minidl")]
                else:
                    continue
                for t in targets:
                    if len(t) > 1 and t[1] in RANKS:
                        yield package, t[1], os.path.relpath(path, ROOT)


def test_every_package_has_a_rank():
    packages = {p for p in os.listdir(ROOT) if os.path.isdir(os.path.join(ROOT, p)) and not p.startswith("_")}
    modules = {p[:-3] for p in os.listdir(ROOT) if p.endswith(".py") and p != "__init__.py"}
    assert packages | modules == set(RANKS), "a new package needs its place in RANKS (and in DESIGN.md)"


def test_imports_go_down_the_layers():
    up = sorted({f"{f}: {a} imports {b}" for a, b, f in _imports()
                 if a in RANKS and a != b and RANKS[b] >= RANKS[a]})
    assert not up, "imports from the same or a higher layer:\n" + "\n".join(up)


def test_every_kernel_module_fulfils_the_contract_or_says_why_not():
    """kernels/__init__.py's CONTRACT: each of _numpy, _numba and _cuda defines (or imports) every name, or lists it
    in NOT_PROVIDED with a reason. Read from the source: _cuda imports only where Numba's CUDA target does."""
    from minidl.kernels import CONTRACT
    for name in ("_numpy", "_numba", "_cuda"):
        tree = ast.parse(open(os.path.join(ROOT, "kernels", f"{name}.py"), encoding="utf-8").read())
        names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        names |= {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
        reasons = {}
        for n in tree.body:
            if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "NOT_PROVIDED" for t in n.targets):
                reasons = ast.literal_eval(n.value)
        missing = [k for k in CONTRACT if k not in names and not reasons.get(k)]
        assert not missing, f"kernels/{name}.py neither provides nor explains {missing}"
        assert not set(reasons) & names, f"kernels/{name}.py lists names it provides as not provided"
