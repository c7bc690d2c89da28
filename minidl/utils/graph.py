"""draw_graph(output, path): the backward graph of a result as a picture, laid out in layers (matplotlib; graphviz
when asked for and installed).

    loss = F.cross_entropy(model(x), y)
    minidl.utils.draw_graph(loss, "lenet_graph.png", model=model, highlight="conv1.weight")

Each op node shows torch's grad_fn name (``ConvolutionBackward0``), the shape of the tensor it made (the shape of
the gradient it receives) and the bytes it saved for backward; each leaf shows its parameter name (from
``model`` or ``params``) and shape. Arrows point the way gradients flow, from the result down to the leaves;
``highlight`` (a parameter's name or a leaf tensor) draws in red every path a gradient takes from the result to
that leaf.

Shapes are found by running the backward pass once (``autograd.grad`` with ``retain_graph=True``: no ``.grad`` is
touched, the graph stays usable). Call it before ``backward()``, or after ``backward(retain_graph=True)``: a freed
graph has lost its saved tensors, and the picture then has no shapes or saved sizes.
"""
import os
import shutil
import threading

from ..autograd import function as _function, grad
from ..autograd.function import AccumulateGrad
from ..autograd.tensor import Tensor


class _ShapeRecorder:
    """A recorder (autograd/function.py's add_recorder) on this thread only, for one backward pass: the gradient
    each node receives has the shape of the tensor the node made. A profile recording meanwhile, here or on
    another thread, records beside it."""

    def __init__(self):
        self.shapes = {}

    def begin(self, name, inputs=(), kind=None):
        return None

    def begin_node(self, node, grad):
        self.shapes.setdefault(node, tuple(grad.shape))
        return None

    def end(self, event, result):
        pass


def _saved_bytes(node):
    saved = node._saved
    if not saved:
        return 0
    total = 0
    for s in saved:
        if s is _function._OUTPUT:
            total += getattr(node._out, "nbytes", 0)
        elif isinstance(s, Tensor):
            total += s._data.nbytes
        else:
            total += getattr(s, "nbytes", 0)
    return total


def _fmt_bytes(n):
    for unit, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


class Graph:
    """The nodes (dicts: name, kind 'op'/'parameter'/'leaf', shape, saved_bytes, layer, order, on_path) and edges
    (index pairs, in the direction gradients flow) of a backward graph, laid out in layers."""

    def __init__(self, nodes, edges):
        self.nodes, self.edges = nodes, edges

    def label(self, i):
        n = self.nodes[i]
        lines = [n["name"]]
        if n["shape"] is not None:
            lines.append(str(tuple(n["shape"])))
        if n["saved_bytes"]:
            lines.append(f"saved {_fmt_bytes(n['saved_bytes'])}")
        return "\n".join(lines)

    def dot(self):
        """The graph in graphviz's dot language."""
        colours = {"op": "lightgrey", "parameter": "lightblue", "leaf": "white"}
        out = ["digraph backward {", '  node [shape=box, style="rounded,filled", fontname="Helvetica"];']
        for i, n in enumerate(self.nodes):
            label = self.label(i).replace('"', r'\"').replace("\n", r"\n")
            colour = "salmon" if n["on_path"] and n["kind"] != "op" else colours[n["kind"]]
            out.append(f'  n{i} [label="{label}", fillcolor="{colour}"'
                       + (', color="red", penwidth=2' if n["on_path"] else "") + "];")
        for a, b in self.edges:
            red = self.nodes[a]["on_path"] and self.nodes[b]["on_path"]
            out.append(f"  n{a} -> n{b}" + (' [color="red", penwidth=2]' if red else "") + ";")
        return "\n".join(out + ["}"])


def _names(params, model):
    names = {}
    if model is not None:
        names.update({id(p): n for n, p in model.named_parameters()})
    if params is not None:
        names.update({id(p): n for n, p in dict(params).items()})
    return names


def _walk(root):
    """Every node reachable from root, in breadth-first order, and each node's edges (in order)."""
    order, seen, i = [root], {root}, 0
    while i < len(order):
        for e in order[i]._edges:
            if e is not None and e not in seen:
                seen.add(e)
                order.append(e)
        i += 1
    return order


def _shapes(output, order):
    leaves = [n.variable for n in order if isinstance(n, AccumulateGrad)]
    recorder = _ShapeRecorder()
    try:
        with _function.recording(recorder, thread=threading.get_ident()):
            grad(output, leaves or [output], grad_outputs=Tensor._make(output._data * 0 + 1), retain_graph=True,
                 allow_unused=True)
    except RuntimeError as e:  # a freed graph (backward already ran without retain_graph): no shapes
        if isinstance(e, (ValueError, TypeError, IndexError)):  # minidl's argument errors are RuntimeErrors too
            raise
        return {}
    return recorder.shapes


def _layers(order):
    """Layer of each node: the longest path from the result (nodes in topological order, Kahn's); a leaf goes just
    below its first consumer."""
    incoming = {}
    for node in order:
        for e in node._edges:
            if e is not None:
                incoming[e] = incoming.get(e, 0) + 1
    layer, ready = {order[0]: 0}, [order[0]]
    while ready:
        node = ready.pop()
        for e in node._edges:
            if e is None:
                continue
            if isinstance(e, AccumulateGrad):
                layer.setdefault(e, layer[node] + 1)
            else:
                layer[e] = max(layer.get(e, 0), layer[node] + 1)
            incoming[e] -= 1
            if incoming[e] == 0:
                ready.append(e)
    return layer


def _paths_to(order, target):
    """The nodes on some path from the result to ``target``."""
    on = {target}
    changed = True
    while changed:
        changed = False
        for node in order:
            if node not in on and any(e in on for e in node._edges if e is not None):
                on.add(node)
                changed = True
    return on


def build_graph(output, params=None, model=None, highlight=None):
    """The :class:`Graph` that draw_graph draws."""
    if not isinstance(output, Tensor):
        raise TypeError(f"draw_graph: output must be a Tensor, got {type(output).__name__}")
    if output.grad_fn is None:
        raise ValueError("draw_graph: the output has no backward graph (it does not require grad: was it computed "
                         "under no_grad, or from tensors that do not require grad?)")
    names = _names(params, model)
    order = _walk(output.grad_fn)
    shapes = _shapes(output, order)
    layer = _layers(order)
    target = None
    if highlight is not None:
        for node in order:
            if isinstance(node, AccumulateGrad) and (node.variable is highlight or (
                    isinstance(highlight, str) and names.get(id(node.variable)) == highlight)):
                target = node
        if target is None:
            named = sorted(names[id(n.variable)] for n in order
                           if isinstance(n, AccumulateGrad) and id(n.variable) in names)
            raise ValueError(f"draw_graph: highlight {highlight!r} is not a leaf of this graph; its named leaves are "
                             f"{named}")
    on_path = _paths_to(order, target) if target is not None else set()
    index = {node: i for i, node in enumerate(order)}
    nodes = []
    for node in order:
        if isinstance(node, AccumulateGrad):
            v = node.variable
            name = names.get(id(v))
            nodes.append(dict(name=name or "leaf", kind="parameter" if name else "leaf", shape=tuple(v.shape),
                              saved_bytes=0, layer=layer[node], on_path=node in on_path))
        else:
            nodes.append(dict(name=node.grad_fn_name, kind="op", shape=shapes.get(node),
                              saved_bytes=_saved_bytes(node), layer=layer[node], on_path=node in on_path))
    edges = [(index[node], index[e]) for node in order for e in node._edges if e is not None]
    _order_layers(nodes, edges)
    return Graph(nodes, edges)


def _order_layers(nodes, edges):
    """Place the nodes of each layer left to right by the mean position of the nodes that send them gradients
    (the barycentre heuristic: few crossings), layer by layer from the top."""
    parents = {}
    for a, b in edges:
        parents.setdefault(b, []).append(a)
    by_layer = {}
    for i, n in enumerate(nodes):
        by_layer.setdefault(n["layer"], []).append(i)
    for lay in sorted(by_layer):
        members = by_layer[lay]

        def centre(i):
            ps = [nodes[p]["order"] for p in parents.get(i, ()) if "order" in nodes[p]]
            return sum(ps) / len(ps) if ps else 0.0
        members.sort(key=lambda i: (centre(i), nodes[i]["kind"] != "op"))
        width = len(members)
        for k, i in enumerate(members):
            nodes[i]["order"] = k - (width - 1) / 2


def draw_graph(output, path, params=None, model=None, highlight=None, engine="matplotlib", title=None):
    """Draw the backward graph of ``output`` into ``path`` (PNG with matplotlib; with ``engine='graphviz'`` any
    format graphviz writes, from the path's suffix) and return its :class:`Graph`."""
    if engine not in ("matplotlib", "graphviz"):
        raise ValueError(f"draw_graph: engine must be 'matplotlib' or 'graphviz', got {engine!r}")
    g = build_graph(output, params, model, highlight)
    if engine == "graphviz":
        _render_graphviz(g, path)
    else:
        _render_matplotlib(g, path, title)
    return g


def _render_graphviz(g, path):
    try:
        import graphviz
    except ImportError:
        raise ImportError("draw_graph: engine='graphviz' needs the graphviz package (pip install graphviz) and "
                          "graphviz's dot program; engine='matplotlib' needs neither") from None
    if shutil.which("dot") is None:
        raise RuntimeError("draw_graph: graphviz's dot program is not on PATH; use engine='matplotlib'")
    stem, suffix = os.path.splitext(path)
    graphviz.Source(g.dot()).render(stem, format=suffix.lstrip(".") or "png", cleanup=True)


def _edge_point(p, q, half):
    """Where the segment from p (a box's centre) to q leaves the box of half-sizes ``half``."""
    dx, dy = q[0] - p[0], q[1] - p[1]
    t = min(half[0] / abs(dx) if dx else float("inf"), half[1] / abs(dy) if dy else float("inf"), 1.0)
    return p[0] + t * dx, p[1] + t * dy


def _render_matplotlib(g, path, title):
    from .plots import _plt, _save
    from matplotlib.patches import FancyArrowPatch
    plt = _plt()
    layers = max(n["layer"] for n in g.nodes) + 1
    width = max(sum(1 for n in g.nodes if n["layer"] == k) for k in range(layers))
    dx, dy = 2.3, 0.95  # inches between node centres
    fig, ax = plt.subplots(figsize=(max(4.0, width * dx + 0.5), layers * dy + 0.8))
    ax.set_xlim(-(width * dx) / 2 - 0.2, (width * dx) / 2 + 0.2)
    ax.set_ylim(-(layers - 0.5) * dy, 0.6 * dy)
    ax.axis("off")
    pos = {i: (n["order"] * dx, -n["layer"] * dy) for i, n in enumerate(g.nodes)}
    fill = {"op": "#e8e8e8", "parameter": "#cfe3f7", "leaf": "#ffffff"}
    boxes = {}
    for i, n in enumerate(g.nodes):
        colour = "#f6c1b8" if n["on_path"] and n["kind"] != "op" else fill[n["kind"]]
        edge = "#c0392b" if n["on_path"] else "#555555"
        boxes[i] = ax.text(*pos[i], g.label(i), ha="center", va="center", fontsize=7,
                           bbox=dict(boxstyle="round,pad=0.3", fc=colour, ec=edge, lw=1.6 if n["on_path"] else 0.8))
    fig.canvas.draw()  # the boxes' sizes exist once drawn: arrows go from box edge to box edge
    to_data = ax.transData.inverted()
    half = {}
    for i, t in boxes.items():
        (x0, y0), (x1, y1) = to_data.transform(t.get_bbox_patch().get_window_extent())
        half[i] = ((x1 - x0) / 2, (y1 - y0) / 2)
    for a, b in g.edges:
        red = g.nodes[a]["on_path"] and g.nodes[b]["on_path"]
        ax.add_patch(FancyArrowPatch(_edge_point(pos[a], pos[b], half[a]), _edge_point(pos[b], pos[a], half[b]),
                                     arrowstyle="-|>", mutation_scale=9, shrinkA=0, shrinkB=0,
                                     color="#c0392b" if red else "#888888", lw=1.4 if red else 0.7))
    ax.set_title(title or "backward graph: gradients flow from the result (top) to the leaves", fontsize=9)
    return _save(fig, path)
