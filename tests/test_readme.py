"""The README agrees with itself and with the results files: every table and sample output in it is generated from
benchmarks/results*.json and benchmarks/results_*.txt, its claims are the tables' numbers, each table's "Measured on"
line names the commit that recorded it, it names only what a reader can open, its table of contents lists every
section, it keeps to its layout rules (short lines, short paragraphs), and every code block in it runs or is checked.
docs/tour.md, where the tour's exhaustive lists live, is held to the same paths, links and layout."""
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

import minidl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")
README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
TOUR = open(os.path.join(ROOT, "docs", "tour.md"), encoding="utf-8").read()
DOCS = {"README.md": README, "docs/tour.md": TOUR}
FLAT = " ".join(README.split())  # the README with its line breaks and runs of spaces made single spaces


def _module(name):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", os.path.join(BENCH, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _json(name):
    with open(os.path.join(BENCH, name)) as f:
        return json.load(f)


def _text(name):
    with open(os.path.join(BENCH, name), encoding="utf-8") as f:
        return f.read()


@pytest.mark.parametrize("script, results", [("bench", "results.json"), ("train_vs_torch", "results_train.json"),
                                             ("distributed", "results_distributed.json")])
def test_every_table_and_number_comes_from_the_results_files(script, results):
    """Each table that the script's markdown() makes is in the README as it is made; each sentence it makes is there
    word for word (reflowed to the README's line width)."""
    text = _module(script).markdown(_json(results))
    for block in text.split("\n\n"):
        if block.strip().startswith("|"):
            assert block.strip() in README, f"README lacks, or has another version of, this table of {results}:" \
                                            f"\n{block}"
            continue
        for line in block.strip().splitlines():
            assert " ".join(line.split()) in FLAT, f"README lacks, or has another version of, this line of " \
                                                   f"{results}:\n{line}"


def _example_run():
    return _text("results_example.txt").splitlines()


def test_the_sample_output_is_the_recorded_real_run():
    lines = _example_run()
    block = README.split("A real run (`benchmarks/results_example.txt`")[1].split("```\n")[1].split("```")[0]
    shown = block.strip().splitlines()
    assert shown[0] == lines[0] and shown[1] == "..."
    assert shown[2:] == lines[-3:], "the README's sample output is not the end of benchmarks/results_example.txt"


def test_each_lenet_accuracy_quoted_is_its_recorded_run():
    """The one-process, two-process and GPU runs of the example: the README quotes each from its file."""
    acc = {name: re.search(r"test accuracy: ([\d.]+)%", _text(name)).group(1)
           for name in ("results_example.txt", "results_example_distributed.txt", "results_example_gpu.txt")}
    one, two, gpu = acc.values()
    assert (f"12 epochs: {two}% test accuracy on 2 processes (`benchmarks/results_example_distributed.txt`), "
            f"{one}% on one (`benchmarks/results_example.txt`)") in FLAT
    assert f"the example's run above ({one}%)" in FLAT
    assert f"the example reaches {gpu}% (`benchmarks/results_example_gpu.txt`)" in FLAT


def test_the_gpu_table_and_claim_are_the_recorded_run():
    """results_gpu.json: minidl's CUDA kernels ('gpu') and, for the rows measured with them, the reference kernels;
    the claim's range is over every row of the file."""
    results = _json("results_gpu.json")
    ref = {r["name"]: r["ratio"] for r in results["gpu_reference_kernels"]}
    rows = [f"| {r['name']} | {r['minidl_ms']:.2f} | {r['torch_ms']:.2f} | {r['ratio']:.2f} | {ref[r['name']]:.2f} |"
            for r in results["gpu"] if r["name"] in ref]
    device = results["gpu"][0]["device"].replace("NVIDIA ", "")
    table = "\n".join([f"| GPU training step, batch 128 ({device}) | minidl ms | torch ms | ratio "
                       "| with the reference kernels: ratio |", "|---|---:|---:|---:|---:|", *rows])
    assert table in README, f"README lacks, or has another version of, this table:\n{table}"
    ratios = [r["ratio"] for r in results["gpu"]]
    assert f"a step costs {min(ratios):.1f}-{max(ratios):.1f}x torch's on the same GPU" in FLAT


def _paths_named(text):
    return re.findall(r"`((?:minidl|tests|benchmarks|examples|docs)/[\w/.]+\.(?:py|md|txt|json|sh|png))`", text)


@pytest.mark.parametrize("doc", DOCS)
def test_it_names_only_what_a_reader_can_open(doc):
    text = DOCS[doc]
    assert not re.search(r"\bissue \d+", text, re.I), "issue numbers mean nothing to a reader"
    for m in re.finditer(r"\bchanges? \d+", text):
        assert "benchmarks/NOTES.md" in text[max(0, m.start() - 40):m.start()], text[m.start() - 60:m.end()]
    for path in _paths_named(text):
        assert os.path.exists(os.path.join(ROOT, path)), f"{doc} names {path}, which does not exist"


def test_every_picture_is_in_the_repository():
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert pictures, "the README's tour shows pictures"
    for path in pictures:
        with open(os.path.join(ROOT, path), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", path


def _anchor(heading):
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(text):
    return {_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", _outside_code(text), re.M)}


def _outside_code(text):
    return re.sub(r"^```.*?^```$", "", text, flags=re.S | re.M)


@pytest.mark.parametrize("doc", DOCS)
def test_the_table_of_contents_lists_every_section(doc):
    """Every ## and ### heading has its link in the contents (the README's ### headings are its subsections)."""
    text = DOCS[doc]
    toc = text.split("## Contents")[1].split("\n## ")[0]
    for heading in re.findall(r"^#{2,3} (.+)$", _outside_code(text), re.M):
        if heading == "Contents":
            continue
        assert f"(#{_anchor(heading)})" in toc, f"{doc}'s contents lack '{heading}' (#{_anchor(heading)})"


@pytest.mark.parametrize("doc", DOCS)
def test_every_link_leads_somewhere(doc):
    """Links to a section of this page, to another page of the repository, or to a section of another page."""
    text, here = DOCS[doc], os.path.dirname(os.path.join(ROOT, doc))
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        full = os.path.normpath(os.path.join(here, path)) if path else os.path.join(ROOT, doc)
        assert os.path.exists(full), f"{doc} links to {target}, which does not exist"
        if anchor:
            with open(full, encoding="utf-8") as f:
                assert anchor in _anchors(f.read()), f"{doc} links to {target}: no such section"


def _layout_faults(text):
    """The layout rules. Outside fenced code blocks (```), indented command lines ('    $ ...') and tables (rows start
    with '|'): no line over 120 characters, and no paragraph over 8 lines. A paragraph is a run of consecutive
    non-blank lines; a heading, and each list item ('- ' or '1. '), starts a paragraph of its own."""
    faults, para, in_code = [], [], False
    for n, line in enumerate(text.splitlines() + [""], 1):
        if line.startswith("```"):
            in_code, para = not in_code, []
            continue
        if in_code or line.startswith("|") or line.startswith("    $ ") or not line.strip():
            para = []
            continue
        if len(line) > 120:
            faults.append(f"line {n} has {len(line)} characters")
        if line.startswith("#") or re.match(r"(- |\d+\. )", line):
            para = []
        para.append(n)
        if len(para) == 9:
            faults.append(f"the paragraph from line {para[0]} is over 8 lines")
    return faults


@pytest.mark.parametrize("doc", DOCS)
def test_lines_and_paragraphs_are_short(doc):
    assert not _layout_faults(DOCS[doc]), "\n".join(_layout_faults(DOCS[doc]))


def test_the_layout_rules_catch_what_they_forbid():
    assert _layout_faults("x" * 121) and not _layout_faults("| " + "x" * 200 + " |") and not _layout_faults(
        "```\n" + "x" * 200 + "\n```")
    assert _layout_faults("\n".join(["a"] * 9)) and not _layout_faults("\n".join(["- a", "  b"] * 8))


def test_the_after_training_code_runs(tmp_path, capsys):
    code = README.split("### After training: classify an image")[1].split("```python\n")[1].split("```")[0]
    model = minidl.models.LeNet5()
    ckpt = tmp_path / "checkpoint.npz"
    minidl.utils.save_checkpoint(str(ckpt), model)
    code = code.replace("runs/lenet5_mnist_<date-time>/checkpoint.npz", str(ckpt))
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert re.fullmatch(r"predicted \d with probability [\d.]+; the label is \d\n", out), out


def _table_row(label, cells):
    return f"| {label} | " + " | ".join(cells) + " |"


def test_the_pruning_numbers_are_the_recorded_run():
    lines = [line for line in _text("results_prune.txt").splitlines() if not line.startswith("#")]
    dense = re.search(r"accuracy ([\d.]+)%", lines[0]).group(1)
    rows = [re.search(r"sparsity\s+(\d+)%.*accuracy ([\d.]+)% pruned, ([\d.]+)% after", line).groups()
            for line in lines[1:]]
    assert f"dense {dense}%; `benchmarks/results_prune.txt`" in FLAT
    table = "\n".join([_table_row("sparsity", [r[0] + "%" for r in rows]), "|---|" + "---:|" * len(rows),
                       _table_row("test accuracy as pruned", [r[1] + "%" for r in rows]),
                       _table_row("after one epoch of fine-tuning", [r[2] + "%" for r in rows])])
    assert table in README, f"README lacks, or has another version of, this table:\n{table}"


def test_the_vanishing_gradient_numbers_are_the_recorded_run():
    runs = {m.group(1): m.groups()[1:] for m in re.finditer(
        r"^(plain|residual)\s.*?first step ([\d.e+-]+) / ([\d.e+-]+);.*?steps ([\d.]+)$",
        _text("results_vanishing.txt"), re.M)}
    for name in ("plain", "residual"):
        first, last, loss = runs[name]
        assert _table_row(name, [f"{first} / {last}", loss]) in README, name
    assert "`benchmarks/results_vanishing.txt`" in README


def _fenced_blocks():
    """(language, code, the README's text before the block) for each ``` block."""
    return [(m.group(1), m.group(2), README[:m.start()])
            for m in re.finditer(r"^```(\w*)\n(.*?)^```$", README, re.S | re.M)]


def test_every_code_block_runs_or_is_checked(tmp_path):
    """Each ```python block, in a fresh process in an empty folder, as a reader would paste it (the one placeholder,
    a run's folder, pointed at a checkpoint made for it). Each plain ``` block is either the recorded run (checked
    above) or output of the ```python block before it: each of its lines is a line that block printed."""
    ckpt = tmp_path / "checkpoint.npz"
    minidl.utils.save_checkpoint(str(ckpt), minidl.models.LeNet5())
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    blocks, ran, printed = _fenced_blocks(), 0, None
    for i, (lang, code, before) in enumerate(blocks):
        if lang == "python":
            code = code.replace("runs/lenet5_mnist_<date-time>/checkpoint.npz", str(ckpt))
            assert "<" not in code.replace("<=", "").replace("< ", ""), f"block {i} has a placeholder:\n{code}"
            folder = tmp_path / f"block{i}"
            folder.mkdir()
            run = subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True,
                                 timeout=300)
            assert run.returncode == 0, f"README block {i} fails:\n{code}\n{run.stderr[-3000:]}"
            ran, printed = ran + 1, {line.rstrip() for line in run.stdout.splitlines()}
        elif lang == "" and "A real run (`benchmarks/results_example.txt`" in before.rstrip().split("\n\n")[-1]:
            continue
        else:
            assert lang == "" and printed is not None, f"block {i} is neither run nor checked:\n{code}"
            missing = [line for line in code.splitlines() if line.rstrip() not in printed]
            assert not missing, f"block {i} shows lines its ```python block did not print:\n" + "\n".join(missing)
    assert ran >= 4


def test_every_command_shown_is_one_the_tests_or_ci_run():
    """The indented '$ ' commands: the test command is what .ci/run runs (its sed, redone here); the example's
    command is run by tests/test_examples.py, and the two-process one by tests/test_distributed.py; each extra they
    install is one of setup.py's."""
    commands = re.findall(r"^    \$ (.+)$", README, re.M)
    ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read()
    assert "sed -n 's/^    \\$ //p' README.md | grep -m1 'pytest'" in ci
    assert [c for c in commands if "pytest" in c][0] == commands[0]
    runners = {commands[0]: (".ci/run", "pytest"),
               "pip install -e . && python examples/mnist_lenet.py": ("tests/test_examples.py", '"mnist_lenet.py"'),
               'pip install -e ".[distributed]" && mpiexec -n 2 python examples/mnist_lenet.py --distributed':
                   ("tests/test_distributed.py", '"mnist_lenet.py"), "--distributed"')}
    assert sorted(commands) == sorted(runners), commands
    setup = open(os.path.join(ROOT, "setup.py"), encoding="utf-8").read()
    for command, (runner, needle) in runners.items():
        assert needle in open(os.path.join(ROOT, runner), encoding="utf-8").read(), (command, runner)
        for extra in re.findall(r'\.\[(\w+)\]', command):
            assert f'"{extra}":' in setup, f"setup.py has no extra '{extra}'"


def test_the_claims_of_speed_are_the_tables():
    """The claim is generated with the step table (bench.markdown, checked above); the old hand-written ranges,
    which the tables contradicted, are gone."""
    steps = _json("results.json")["steps"]
    seed = [r["ratio"] for r in steps if r["name"] in ("LeNet5", "InceptionNet", "ResidualNet")]
    assert f"minidl takes {min(seed):.2f}-{max(seed):.2f}x torch's time on the seed nets" in FLAT
    assert not re.search(r"\b1\.1-2\.2x|1\.5-1\.8x", README)


def _tour_rows():
    table = README.split("| area | module | key names |")[1].split("\n\n")[0]
    return [row.split("|")[1:4] for row in table.strip().splitlines()[1:]]


def test_the_tour_table_names_only_what_exists_and_the_tour_page_lists_it():
    """Each key name is an attribute (a dotted path) of the row's module, and docs/tour.md, the exhaustive list,
    has it too."""
    rows = _tour_rows()
    assert len(rows) >= 15
    for area, module, names in rows:
        mod = importlib.import_module(re.fullmatch(r"\s*`([\w.]+)`\s*", module).group(1))
        names = re.findall(r"`([\w.]+)`", names)
        assert names, area
        for name in names:
            obj = mod
            for part in name.split("."):
                if not hasattr(obj, part) and isinstance(obj, type(mod)):  # a submodule not yet imported
                    importlib.util.find_spec(f"{obj.__name__}.{part}") and importlib.import_module(
                        f"{obj.__name__}.{part}")
                assert hasattr(obj, part), f"the tour names {mod.__name__}.{name}, which does not exist"
                obj = getattr(obj, part)
            assert re.search(rf"`[^`]*\b{re.escape(name.split('.')[-1])}\b", TOUR), f"docs/tour.md lacks {name}"


# Each "Measured on" line, in the README's order: the section it closes, and the results it dates (file, and the
# keys of a JSON file that the line covers; None: the whole file). The test counts have no file.
MEASURED = [("Quickstart", None, None), ("Accuracy: minidl next to torch", "results_train.json", None),
            ("Pruning LeNet-5", "results_prune.txt", None),
            ("CPU steps and layers", "results.json", ("steps", "overhead", "gpt", "first_eval", "layers")),
            ("CPU steps and layers", "results.json", ("latency",)), ("Memory", "results.json", ("memory",)),
            ("A busy machine", "results.json", ("load", "epoch")), ("GPU", "results_gpu.json", None),
            ("Several processes", "results_distributed.json", None)]


def _measured_on_lines():
    found, heading = [], None
    for line in _outside_code(README).splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.startswith("Measured on:"):
            found.append((heading, line))
    return found


def _git(*args):
    return subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True)


def _recorded(commit, name, keys):
    """The results as of `commit` (None where the file did not exist)."""
    shown = _git("show", f"{commit}:benchmarks/{name}")
    if shown.returncode:
        return None
    if not name.endswith(".json"):
        return shown.stdout
    data = json.loads(shown.stdout)
    return data if keys is None else {k: data.get(k) for k in keys}


def test_each_measured_on_line_names_the_commit_that_recorded_its_numbers():
    """One 'Measured on: machine, date, commit' line per table (or group of tables from one run). Where git history is
    at hand: the commit is dated that day, its version of the results is today's, and its parent's is not."""
    lines = _measured_on_lines()
    assert [h for h, _ in lines] == [h for h, _, _ in MEASURED], lines
    parsed = []
    for (_, line), (_, name, keys) in zip(lines, MEASURED):
        m = re.fullmatch(r"Measured on: (.+), (\d{4}-\d\d-\d\d), commit ([0-9a-f]{7,40})(?: \(.+\))?\.", line)
        assert m, f"not 'Measured on: machine, date, commit ...': {line}"
        parsed.append((m.groups(), name, keys))
        if name == "results_gpu.json":
            assert _json(name)["meta"]["date"] == m.group(2)
    if not shutil.which("git") or _git("rev-parse", "--is-shallow-repository").stdout.strip() != "false":
        pytest.skip("no full git history here")
    for (_, date, commit), name, keys in parsed:
        assert _git("log", "-1", "--format=%ad", "--date=short", commit).stdout.strip() == date, (commit, date)
        if name is None:
            continue
        now = _text(name) if not name.endswith(".json") else (
            _json(name) if keys is None else {k: _json(name).get(k) for k in keys})
        assert _recorded(commit, name, keys) == now, f"{commit} did not record today's {name} {keys or ''}"
        assert _recorded(f"{commit}^", name, keys) != now, f"{name} {keys or ''} was recorded before {commit}"


def test_the_accuracy_benchmark_still_runs():
    """benchmarks/train_vs_torch.py makes the README's accuracy table; it broke unnoticed once (datasets' data became
    tensors). One epoch of LeNet-5 under both engines, from the same weights, on the same batches."""
    row = _module("train_vs_torch").run("LeNet5", "mnist-subset", 128, 3e-3, 1, 0)
    assert row["minidl_acc"] > 0.8 and row["torch_acc"] > 0.8 and abs(row["minidl_acc"] - row["torch_acc"]) < 0.05
    assert abs(row["compiled_acc"] - row["minidl_acc"]) < 0.05 and row["compiled_s"] > 0
