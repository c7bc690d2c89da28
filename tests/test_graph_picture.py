"""minidl.utils.draw_graph: the backward graph of a result, its nodes' shapes and saved sizes, the leaves' names, a
highlighted gradient path, the layout, that drawing leaves the graph and .grad as they were, and that its shape
pass records beside a profile."""
import threading

import numpy as np
import pytest

import minidl
import minidl.nn as nn
import minidl.nn.functional as F
from minidl.autograd import function
from minidl.utils.graph import build_graph


def _lenet_loss(batch=4):
    minidl.manual_seed(0)
    model = minidl.models.LeNet5()
    x, y = minidl.randn(batch, 1, 28, 28), minidl.randint(0, 10, (batch,))
    return model, x, y, F.cross_entropy(model(x), y)


def test_the_lenet5_loss_graph_names_ops_shapes_saved_sizes_and_parameters(tmp_path):
    model, x, y, loss = _lenet_loss()
    path = tmp_path / "graph.png"
    g = minidl.utils.draw_graph(loss, str(path), model=model)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    ops = [n for n in g.nodes if n["kind"] == "op"]
    params = {n["name"]: n["shape"] for n in g.nodes if n["kind"] == "parameter"}
    assert params == {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert g.nodes[0]["name"] == "NllLossBackward0" and g.nodes[0]["shape"] == () and g.nodes[0]["layer"] == 0
    convs = sorted((n["shape"] for n in ops if n["name"] == "ConvolutionBackward0"), key=lambda s: -s[-1])
    assert convs == [(4, 6, 28, 28), (4, 16, 10, 10)]  # the shapes conv1 and conv2 made
    pools = {n["shape"] for n in ops if n["name"] == "MaxPool2DWithIndicesBackward0"}
    assert pools == {(4, 6, 14, 14), (4, 16, 5, 5)}
    conv1 = next(n for n in ops if n["shape"] == (4, 6, 28, 28) and n["name"] == "ConvolutionBackward0")
    assert conv1["saved_bytes"] >= x.numel() * 4  # it keeps its input (or its columns) for the weight's gradient
    for a, b in g.edges:  # gradients flow down the layers
        assert g.nodes[b]["layer"] > g.nodes[a]["layer"]
    assert "ConvolutionBackward0\\n(4, 6, 28, 28)\\nsaved" in g.dot()


def test_drawing_leaves_the_graph_usable_and_grad_untouched(tmp_path):
    model, x, y, loss = _lenet_loss()
    minidl.utils.draw_graph(loss, str(tmp_path / "g.png"), model=model)
    assert all(p.grad is None for p in model.parameters())
    loss.backward()
    drawn = [p.grad.numpy().copy() for p in model.parameters()]
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    for a, p in zip(drawn, model.parameters()):
        np.testing.assert_array_equal(a, p.grad.numpy())
    g = minidl.utils.draw_graph(loss, str(tmp_path / "freed.png"), model=model)  # after a plain backward
    assert all(n["shape"] is None for n in g.nodes if n["kind"] == "op")
    assert function.installed_recorders() == ((), {})  # its failed shape pass took its recorder off too


def test_the_shape_pass_records_on_its_own_thread_beside_a_profile(tmp_path):
    model, x, y, _ = _lenet_loss()
    logits = model(x)
    seen = []
    logits.register_hook(lambda g: seen.append(function.installed_recorders()))  # runs inside the shape pass
    loss = F.cross_entropy(logits, y)
    with minidl.profiler.profile() as prof:
        g = build_graph(loss, model=model)
        x.exp()  # the profile goes on recording after the drawing
    (everywhere, per_thread), = seen
    assert len(everywhere) == 1  # the profile's, on every thread; the shape pass's only on this one
    assert list(per_thread) == [threading.get_ident()] and len(per_thread[threading.get_ident()]) == 1
    names = [e.name for e in prof.events()]
    assert "ConvolutionBackward0" in names and names[-1] == "exp"  # the shape pass's nodes, then the op after it
    assert {n["shape"] for n in g.nodes if n["name"] == "ConvolutionBackward0"} == {(4, 6, 28, 28), (4, 16, 10, 10)}
    assert function.installed_recorders() == ((), {}) and function._profiler is None
    assert minidl.autograd.Function.__dict__["apply"] is function._plain_apply


def test_highlight_marks_every_path_from_the_result_to_one_leaf():
    w1 = nn.Parameter(minidl.randn(3))
    w2 = nn.Parameter(minidl.randn(3))
    x = minidl.randn(3)
    a = w1 * x
    out = (a + a.exp() * w2).sum()  # two paths from out to w1, one to w2
    g = build_graph(out, params={"w1": w1, "w2": w2}, highlight="w1")
    on = {n["name"] for n in g.nodes if n["on_path"]}
    assert {"SumBackward0", "AddBackward0", "MulBackward0", "ExpBackward0", "w1"} <= on and "w2" not in on
    assert build_graph(out, highlight=w2).nodes[[n["name"] for n in g.nodes].index("w2")]["on_path"]


def test_a_residual_graph_is_layered_by_longest_path():
    minidl.manual_seed(0)
    block = minidl.models.ResidualNet()
    out = block(minidl.randn(2, 1, 28, 28)).sum()
    g = build_graph(out, model=block)
    for a, b in g.edges:
        assert g.nodes[b]["layer"] > g.nodes[a]["layer"]
    by_layer = {}
    for n in g.nodes:
        by_layer.setdefault(n["layer"], []).append(n["order"])
    for orders in by_layer.values():  # centred, one slot apart
        assert sorted(orders) == [k - (len(orders) - 1) / 2 for k in range(len(orders))]


def test_wrong_input_is_refused_naming_what_is_wrong(tmp_path):
    model, x, y, loss = _lenet_loss()
    with pytest.raises(ValueError, match="^draw_graph: the output has no backward graph"):
        minidl.utils.draw_graph(loss.detach(), str(tmp_path / "x.png"))
    with pytest.raises(TypeError, match="^draw_graph: output must be a Tensor"):
        minidl.utils.draw_graph(3.0, str(tmp_path / "x.png"))
    with pytest.raises(ValueError, match=r"^draw_graph: highlight 'conv9.weight' is not a leaf of this graph; its "
                                         r"named leaves are \['conv1.bias'"):
        minidl.utils.draw_graph(loss, str(tmp_path / "x.png"), model=model, highlight="conv9.weight")
    with pytest.raises(ValueError, match="^draw_graph: engine must be"):
        minidl.utils.draw_graph(loss, str(tmp_path / "x.png"), engine="tikz")


def test_graphviz_renders_when_installed(tmp_path):
    pytest.importorskip("graphviz")
    import shutil
    if shutil.which("dot") is None:
        pytest.skip("graphviz's dot program is not installed")
    model, x, y, loss = _lenet_loss()
    minidl.utils.draw_graph(loss, str(tmp_path / "g.svg"), model=model, engine="graphviz")
    assert (tmp_path / "g.svg").read_text().lstrip().startswith("<?xml")
