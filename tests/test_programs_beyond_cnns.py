"""Programs of the kinds people learn from after CNNs (examples/pytorch_style): each runs under minidl and, with only
its imports changed, under real torch; fed the same data from the same weights in float64, the two engines' losses
are side by side step for step."""
import numpy as np
import pytest
import torch

import minidl
import suite
from test_pytorch_programs import _as_torch_program, _program_namespace


def _same_weights(ours, theirs):
    ours.load_state_dict({k: minidl.tensor(v.detach().numpy()) for k, v in theirs.state_dict().items()})


def test_the_regression_program_fits_as_under_torch():
    ns, tns = _program_namespace("regression.py"), _as_torch_program("regression.py")
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((4, 1)) * 5, rng.standard_normal(1) * 5
    xs = [rng.standard_normal(32) for _ in range(300)]

    def batches(lib, make_features):
        for x in xs:
            f = make_features(lib.tensor(x), 4)
            yield f, f @ lib.tensor(w) + lib.tensor(b)
    theirs = torch.nn.Linear(4, 1).double()
    ours = minidl.nn.Linear(4, 1).double()
    _same_weights(ours, theirs)
    m_loss, m_steps = ns["fit"](ours, None, None, 4, lr=0.1, max_steps=300,
                                batches=batches(minidl, ns["make_features"]))
    t_loss, t_steps = tns["fit"](theirs, None, None, 4, lr=0.1, max_steps=300,
                                 batches=batches(torch, tns["make_features"]))
    assert m_steps == t_steps and m_loss.item() == pytest.approx(t_loss.item(), rel=1e-9)
    np.testing.assert_allclose(ours.weight.detach().numpy(), theirs.weight.detach().numpy(), rtol=1e-9)
    assert f"{m_loss:.6f}" == f"{t_loss:.6f}"  # the program prints the 0-d loss with a format spec


def test_the_regression_program_converges_from_its_own_random_data(capsys):
    loss, steps = _program_namespace("regression.py")["main"]([])
    out = capsys.readouterr().out
    assert loss < 1e-3 and f"Loss: {loss:.6f} after {steps} batches" in out, out


@pytest.mark.parametrize("flash", [True, False], ids=["scaled_dot_product_attention", "masked_softmax"])
def test_the_tiny_gpt_trains_as_under_torch(flash):
    ns, tns = _program_namespace("tiny_gpt.py"), _as_torch_program("tiny_gpt.py")
    torch.manual_seed(0)
    theirs = tns["GPT"]().double()
    minidl.manual_seed(0)
    ours = ns["GPT"]().double()
    _same_weights(ours, theirs)
    for model in (ours, theirs):
        for block in model.blocks:
            block.attn.flash = flash
    rng = np.random.default_rng(0)
    rows = [[ns["encode"](a, b) for a, b in rng.integers(0, 100, (16, 2)).tolist()] for _ in range(25)]

    def batches(lib):
        for r in rows:
            yield lib.tensor([x for x, _ in r]), lib.tensor([y for _, y in r])
    m_losses = ns["train"](ours, 25, batches=batches(minidl), log_every=0)
    t_losses = tns["train"](theirs, 25, batches=batches(torch), log_every=0)
    np.testing.assert_allclose(m_losses, t_losses, rtol=1e-9)
    assert m_losses[-1] < m_losses[0] - 0.5  # it learns within the 25 steps
    for k, v in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[k].numpy(), v.numpy(), rtol=1e-7, atol=1e-10, err_msg=k)


@suite.exhaustive  # the side-by-side test above shows it learning (its loss falls 0.5 in 25 steps)
def test_the_tiny_gpt_learns_to_add(capsys):
    """300 of its default 1,500 steps: the loss falls well below its start (its default run writes 96.8% of sums right;
    torch's, from other random numbers, 98.0%)."""
    losses, acc = _program_namespace("tiny_gpt.py")["main"](["--steps", "300", "--eval", "50"])
    assert losses[0] > 2.0 and np.mean(losses[-20:]) < 1.7, losses[::50]
    assert "random sums right" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["LSTM", "Transformer"])
def test_the_word_language_model_trains_as_under_torch(kind):
    ns, tns = _program_namespace("word_language_model.py"), _as_torch_program("word_language_model.py")
    words = ns["zen_words"]()
    corpus, tcorpus = ns["Corpus"](words), tns["Corpus"](words)
    ntokens = len(corpus.idx2word)
    theirs = tns["build"](kind, ntokens, dropout=0.0).double()
    ours = ns["build"](kind, ntokens, dropout=0.0).double()
    _same_weights(ours, theirs)
    m_data, t_data = ns["batchify"](corpus.train, 4), tns["batchify"](tcorpus.train, 4)
    lr = 20.0 if kind == "LSTM" else 5.0
    m_losses = [ns["run_epoch"](ours, m_data, ntokens, 8, 4, lr) for _ in range(3)]
    t_losses = [tns["run_epoch"](theirs, t_data, ntokens, 8, 4, lr) for _ in range(3)]
    np.testing.assert_allclose(m_losses, t_losses, rtol=1e-9)
    m_eval = ns["run_epoch"](ours, ns["batchify"](corpus.valid, 1), ntokens, 8, 1)
    t_eval = tns["run_epoch"](theirs, tns["batchify"](tcorpus.valid, 1), ntokens, 8, 1)
    assert m_eval == pytest.approx(t_eval, rel=1e-9)


@pytest.mark.parametrize("kind, lr, epochs, most", [
    pytest.param("LSTM", "20", "30", 30.0, marks=suite.exhaustive), ("Transformer", "5", "8", 10.0)])
def test_the_word_language_model_learns_the_text_and_reloads_its_saved_model(kind, lr, epochs, most, tmp_path):
    """Its default 30 epochs (8 for the Transformer in the default test run), run as a script (pickle finds a class
    saved whole by its module: __main__ here, as in torch), the best model saved whole (save(model)) and loaded back
    (weights_only=False, a file of its own) for the test pass. It starts at a perplexity of about 80 (the
    vocabulary); the LSTM's end depends on when the schedule quarters the learning rate: measured over seeds, torch
    8.6-11.2 (4 seeds), minidl 7.8-20.6 (3 seeds; from equal weights without dropout the two track each other, 3.73
    against 3.67 after 30 epochs in float32). The Transformer is near 1.5 after 30 epochs and 2.4 after 8 under
    both."""
    import os
    import re
    import subprocess
    import sys
    program = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "pytorch_style",
                           "word_language_model.py")
    run = subprocess.run([sys.executable, program, "--model", kind, "--lr", lr, "--epochs", epochs, "--save",
                          str(tmp_path / "m.pt")],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    test_ppl = float(re.search(r"test ppl\s+([\d.]+)", run.stdout).group(1))
    assert test_ppl < most, run.stdout[-2000:]


def test_the_sine_wave_lstm_cells_train_with_lbfgs_as_under_torch():
    """time_sequence_prediction.py on 8 short waves, one L-BFGS step (up to 20 evaluations of the closure; two and
    more steps are tests/test_lbfgs.py's), from torch's initial weights: the same training and test losses in
    float64. Its default run (8 steps on 30 waves) takes the training loss from 0.50 to 1.5e-5 under torch."""
    ns, tns = _program_namespace("time_sequence_prediction.py"), _as_torch_program("time_sequence_prediction.py")
    data = ns["make_waves"](8, 40)
    torch.manual_seed(0)
    theirs = tns["Sequence"](hidden=8).double()
    ours = ns["Sequence"](hidden=8).double()
    _same_weights(ours, theirs)
    m_train, m_test = ns["train"](ours, data, 1, future=5, log=lambda s: None)
    t_train, t_test = tns["train"](theirs, data, 1, future=5, log=lambda s: None)
    np.testing.assert_allclose(m_train, t_train, rtol=1e-9)  # the loss before the step
    np.testing.assert_allclose(m_test, t_test, rtol=1e-7)    # after one step of up to 20 evaluations
    assert m_test[0] < m_train[0] / 10
