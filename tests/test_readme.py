"""The README agrees with itself and with the results files: every table and sample output in it is generated from
benchmarks/results*.json and benchmarks/results_example.txt, its claims are the tables' numbers, it names only what a
reader can open, its table of contents lists every section, and its code runs."""
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

import minidl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")
README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()


def _module(name):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", os.path.join(BENCH, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _json(name):
    with open(os.path.join(BENCH, name)) as f:
        return json.load(f)


@pytest.mark.parametrize("script, results", [("bench", "results.json"), ("train_vs_torch", "results_train.json"),
                                             ("distributed", "results_distributed.json")])
def test_every_table_and_number_comes_from_the_results_files(script, results):
    text = _module(script).markdown(_json(results))
    for block in text.split("\n\n"):
        assert block.strip() in README, f"README lacks, or has another version of, this part of {results}:\n{block}"


def _example_run():
    with open(os.path.join(BENCH, "results_example.txt"), encoding="utf-8") as f:
        return f.read().splitlines()


def test_the_sample_output_is_the_recorded_real_run():
    lines = _example_run()
    block = README.split("A real run (`benchmarks/results_example.txt`")[1].split("```\n")[1].split("```")[0]
    shown = block.strip().splitlines()
    assert shown[0] == lines[0] and shown[1] == "..."
    assert shown[2:] == lines[-3:], "the README's sample output is not the end of benchmarks/results_example.txt"


def test_each_lenet_accuracy_quoted_is_its_recorded_run():
    """The one-process and the two-process runs of the example: the README quotes each from its file."""
    one = re.search(r"test accuracy: ([\d.]+)%", "\n".join(_example_run())).group(1)
    with open(os.path.join(BENCH, "results_example_distributed.txt"), encoding="utf-8") as f:
        two = re.search(r"test accuracy: ([\d.]+)%", f.read()).group(1)
    text = " ".join(README.split())
    assert (f"12 epochs: {two}% test accuracy on 2 processes (`benchmarks/results_example_distributed.txt`), "
            f"{one}% on one (`benchmarks/results_example.txt`)") in text
    assert f"the example's run above ({one}%)" in text


def test_it_names_only_what_a_reader_can_open():
    assert not re.search(r"\bissue \d+", README, re.I), "issue numbers mean nothing to a reader"
    for m in re.finditer(r"\bchange \d+", README):
        assert "benchmarks/NOTES.md" in README[max(0, m.start() - 40):m.start()], README[m.start() - 60:m.end()]
    for path in re.findall(r"`((?:minidl|tests|benchmarks|examples)/[\w/.]+\.(?:py|md|txt|json|sh))`", README):
        assert os.path.exists(os.path.join(ROOT, path)), f"README names {path}, which does not exist"


def test_every_picture_is_in_the_repository():
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert pictures, "the README's tour shows pictures"
    for path in pictures:
        with open(os.path.join(ROOT, path), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", path


def test_the_table_of_contents_lists_every_section():
    toc = README.split("## Contents")[1].split("\n## ")[0]
    for heading in re.findall(r"^## (.+)$", README, re.M):
        if heading == "Contents":
            continue
        anchor = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        assert f"(#{anchor})" in toc, f"the table of contents lacks '{heading}' (#{anchor})"


def test_the_after_training_code_runs(tmp_path, capsys):
    code = README.split("### After training: classify an image")[1].split("```python\n")[1].split("```")[0]
    model = minidl.models.LeNet5()
    ckpt = tmp_path / "checkpoint.npz"
    minidl.utils.save_checkpoint(str(ckpt), model)
    code = code.replace("runs/lenet5_mnist_<date-time>/checkpoint.npz", str(ckpt))
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert re.fullmatch(r"predicted \d with probability [\d.]+; the label is \d\n", out), out


def test_the_pruning_numbers_are_the_recorded_run():
    with open(os.path.join(BENCH, "results_prune.txt"), encoding="utf-8") as f:
        lines = [line for line in f.read().splitlines() if not line.startswith("#")]
    dense = re.search(r"accuracy ([\d.]+)%", lines[0]).group(1)
    rows = [re.search(r"sparsity\s+(\d+)%.*accuracy ([\d.]+)% pruned, ([\d.]+)% after", line).groups()
            for line in lines[1:]]
    text = " ".join(README.split())
    assert f"dense {dense}%; `benchmarks/results_prune.txt`" in text
    assert (f"{' / '.join(r[0] + '%' for r in rows)} sparsity {' / '.join(r[1] + '%' for r in rows)} as pruned, "
            f"{' / '.join(r[2] + '%' for r in rows)} after one epoch of fine-tuning") in text


def test_the_vanishing_gradient_numbers_are_the_recorded_run():
    with open(os.path.join(BENCH, "results_vanishing.txt"), encoding="utf-8") as f:
        runs = {m.group(1): m.groups()[1:] for m in re.finditer(
            r"^(plain|residual)\s.*?first step ([\d.e+-]+) / ([\d.e+-]+);.*?steps ([\d.]+)$", f.read(), re.M)}
    text = " ".join(README.split())
    plain, residual = runs["plain"], runs["residual"]
    assert f"({plain[0]} against {plain[1]} at the first step), and the loss stays at {plain[2]}" in text
    assert f"every depth ({residual[0]} against {residual[1]}) and the loss falls ({residual[2]} over" in text


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README, re.S)


def test_every_python_block_runs_as_written(tmp_path):
    """Each ```python block of the README, in a fresh process in an empty folder, as a reader would paste it; the
    one placeholder (a run's folder) is pointed at a checkpoint made for it."""
    blocks = _python_blocks()
    assert len(blocks) >= 3
    ckpt = tmp_path / "checkpoint.npz"
    minidl.utils.save_checkpoint(str(ckpt), minidl.models.LeNet5())
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    for i, code in enumerate(blocks):
        code = code.replace("runs/lenet5_mnist_<date-time>/checkpoint.npz", str(ckpt))
        assert "<" not in code.replace("<=", "").replace("< ", ""), f"block {i} has a placeholder:\n{code}"
        run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0, f"README block {i} fails:\n{code}\n{run.stderr[-3000:]}"


def test_the_claims_of_speed_are_the_tables():
    """The claim is generated with the step table (bench.markdown, checked above); the old hand-written ranges,
    which the tables contradicted, are gone."""
    steps = _json("results.json")["steps"]
    seed = [r["ratio"] for r in steps if r["name"] in ("LeNet5", "InceptionNet", "ResidualNet")]
    assert f"minidl takes {min(seed):.2f}-{max(seed):.2f}x torch's time on the seed nets" in README
    assert not re.search(r"\b1\.1-2\.2x|1\.5-1\.8x", README)


def test_the_accuracy_benchmark_still_runs():
    """benchmarks/train_vs_torch.py makes the README's accuracy table; it broke unnoticed once (datasets' data became
    tensors). One epoch of LeNet-5 under both engines, from the same weights, on the same batches."""
    row = _module("train_vs_torch").run("LeNet5", "mnist-subset", 128, 3e-3, 1, 0)
    assert row["minidl_acc"] > 0.8 and row["torch_acc"] > 0.8 and abs(row["minidl_acc"] - row["torch_acc"]) < 0.05
