"""A tour of minidl's instruments on LeNet-5 and the bundled MNIST digits: what each layer sees (summary with
receptive fields, FLOPs and memory), the backward graph of the loss as a picture, where a training step's time
goes (the profiler's table and a Chrome trace), and how activations and gradients evolve while it trains (the
monitor's figure).

    python examples/see_inside.py                       # writes runs/see_inside/: graph.png, monitor.png, ...
    python examples/see_inside.py --steps 50 --out-dir /tmp/inside
"""
import os

from _common import base_parser, parse, positive, progress_bar

import minidl
import minidl.nn.functional as F
from minidl import data, models, optim, profiler, utils


def main(argv=None):
    p = base_parser(__doc__, batch_size=64, out_dir=os.path.join("runs", "see_inside"), data=False, device=False)
    p.add_argument("--steps", type=positive(int), default=300, help="training steps watched by the monitor")
    args = parse(p, argv)
    os.makedirs(args.out_dir, exist_ok=True)
    out = lambda name: os.path.join(args.out_dir, name)  # noqa: E731
    minidl.manual_seed(args.seed)
    ds = data.MNISTSubset(True)
    images = ((ds.data.float() / 255 - 0.1307) / 0.3081).unsqueeze(1)
    loader = data.DataLoader(data.TensorDataset(images, ds.targets), args.batch_size, shuffle=True)
    model = models.LeNet5()
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    print("1. What each layer sees: receptive field (rf), stride, jump, FLOPs and memory at this batch")
    table = utils.summary(model, (args.batch_size, 1, 28, 28), print_fn=None).table()
    print(table)
    with open(out("summary.txt"), "w") as f:
        f.write(table + "\n")

    x, y = next(iter(loader))
    loss = F.cross_entropy(model(x), y)
    utils.draw_graph(loss, out("graph.png"), model=model, highlight="conv1.weight",
                     title="LeNet-5's loss: the backward graph (red: the gradient's paths to conv1.weight)")
    print(f"\n2. The backward graph of the loss: {out('graph.png')}")

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    for _ in range(3):  # the conv tuner and the compiled kernels' first calls, outside the profile
        step(x, y)
        opt.step()
    with profiler.profile(record_shapes=True) as prof:
        for _ in range(10):
            step(x, y)
            opt.step()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    print("\n3. Where 10 training steps' time goes (minidl.profiler):")
    print(table)
    with open(out("profile.txt"), "w") as f:
        f.write(table)
    prof.export_chrome_trace(out("trace.json"))
    print(f"   a timeline of every op: {out('trace.json')} (open it in ui.perfetto.dev or chrome://tracing)")

    monitor = utils.Monitor(model, inputs=True)
    done = 0
    bar = progress_bar("monitored steps", args.steps, not args.no_progress)
    while done < args.steps:
        for x, y in loader:
            loss = step(x, y)
            monitor.step()
            opt.step()
            done += 1
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            bar.update(1)
            if done == args.steps:
                break
    bar.close()
    monitor.remove()
    monitor.plot(out("monitor.png"), title="LeNet-5")
    print(f"\n4. {args.steps} steps watched by utils.Monitor (last loss {loss.item():.3f}): {out('monitor.png')}")
    return out


if __name__ == "__main__":
    main()
