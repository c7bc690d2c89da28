"""A word-level language model, LSTM or Transformer, as PyTorch's word_language_model example builds one (an
embedding, the recurrent or attention body, a decoder to the vocabulary; truncated backpropagation through time,
gradient clipping, hand-written SGD, the best model saved whole and loaded back), with minidl imported as torch;
with `import torch` it runs under torch.

The corpus is one that every Python has: the Zen of Python (the standard module `this`), 140 words. That is too
little to generalise from, so the training, validation and test text are the same and the model learns it by heart
(batched 4 columns wide for training, 1 for evaluation): what the program shows is the machinery.

    python examples/pytorch_style/word_language_model.py --model LSTM
    python examples/pytorch_style/word_language_model.py --model Transformer --lr 5
"""
import argparse
import codecs
import contextlib
import io
import math
import os
import re
import tempfile

import minidl as torch
import minidl.nn as nn
import minidl.nn.functional as F


# ---- data -------------------------------------------------------------------------------------------------------
def zen_words():
    """The Zen of Python as a list of words, with <eos> at each line's end."""
    with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the text
        import this
    text = codecs.decode(this.s, "rot13")
    return [w for line in text.splitlines() if line.strip() for w in re.findall(r"[\w']+|[^\w\s]", line) + ["<eos>"]]


class Corpus:
    """Word ids of the text (training, validation and test: the same, see above) and the dictionary."""

    def __init__(self, words):
        self.idx2word = sorted(set(words))
        self.word2idx = {w: i for i, w in enumerate(self.idx2word)}
        self.train = self.valid = self.test = torch.tensor([self.word2idx[w] for w in words])


def batchify(data, bsz):
    """(N,) -> (N // bsz, bsz): each column a contiguous stretch of the text."""
    nbatch = data.size(0) // bsz
    return data.narrow(0, 0, nbatch * bsz).view(bsz, -1).t().contiguous()


def get_batch(source, i, bptt):
    seq_len = min(bptt, len(source) - 1 - i)
    return source[i:i + seq_len], source[i + 1:i + 1 + seq_len].reshape(-1)


# ---- models -----------------------------------------------------------------------------------------------------
class RNNModel(nn.Module):
    """Embedding, a recurrent layer (LSTM or GRU), a linear decoder."""

    def __init__(self, rnn_type, ntoken, ninp, nhid, nlayers, dropout=0.2):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        self.rnn_type, self.nhid, self.nlayers = rnn_type, nhid, nlayers
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, input, hidden):
        output, hidden = self.rnn(self.drop(self.encoder(input)), hidden)
        decoded = self.decoder(self.drop(output)).view(-1, self.decoder.out_features)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        h = weight.new_zeros(self.nlayers, bsz, self.nhid)
        return (h, weight.new_zeros(self.nlayers, bsz, self.nhid)) if self.rnn_type == "LSTM" else h


class PositionalEncoding(nn.Module):
    def __init__(self, d_model, dropout=0.1, max_len=5000):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        position = torch.arange(0, max_len, dtype=torch.float).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe.unsqueeze(0).transpose(0, 1))  # (max_len, 1, d_model)

    def forward(self, x):
        return self.dropout(x + self.pe[:x.size(0), :])


class TransformerModel(nn.Module):
    """Embedding, positional encoding, a causal TransformerEncoder, a linear decoder."""

    def __init__(self, ntoken, ninp, nhead, nhid, nlayers, dropout=0.2):
        super().__init__()
        self.model_type = "Transformer"
        self.pos_encoder = PositionalEncoding(ninp, dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.transformer_encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(ninp, nhead, nhid, dropout),
                                                         nlayers)
        self.decoder = nn.Linear(ninp, ntoken)
        self.ninp = ninp
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, src):
        mask = nn.Transformer.generate_square_subsequent_mask(len(src))
        src = self.pos_encoder(self.encoder(src) * math.sqrt(self.ninp))
        return F.log_softmax(self.decoder(self.transformer_encoder(src, mask)), dim=-1)


# ---- training ---------------------------------------------------------------------------------------------------
def repackage_hidden(h):
    """Cut the graph behind the hidden state (truncated backpropagation through time)."""
    return h.detach() if isinstance(h, torch.Tensor) else tuple(repackage_hidden(v) for v in h)


def run_epoch(model, data, ntokens, bptt, bsz, lr=None, clip=0.25):
    """One pass over ``data``: trains with SGD at ``lr``, or evaluates when lr is None; returns the mean loss."""
    model.train(lr is not None)
    transformer = getattr(model, "model_type", "") == "Transformer"
    hidden = None if transformer else model.init_hidden(bsz)
    total, count = 0.0, 0
    with torch.set_grad_enabled(lr is not None):
        for i in range(0, data.size(0) - 1, bptt):
            x, targets = get_batch(data, i, bptt)
            if transformer:
                output = model(x).view(-1, ntokens)
            else:
                hidden = repackage_hidden(hidden)
                output, hidden = model(x, hidden)
            loss = F.nll_loss(output, targets)
            if lr is not None:
                model.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                for p in model.parameters():
                    p.data.add_(p.grad, alpha=-lr)
            total += len(x) * loss.item()
            count += len(x)
    return total / count


def build(kind, ntokens, emsize=32, nhid=64, nlayers=2, nhead=2, dropout=0.2):
    if kind == "Transformer":
        return TransformerModel(ntokens, emsize, nhead, nhid, nlayers, dropout)
    return RNNModel(kind, ntokens, emsize, nhid, nlayers, dropout)


def main(argv=None):
    parser = argparse.ArgumentParser(description="a word-level language model on the Zen of Python")
    parser.add_argument("--model", default="LSTM", choices=["LSTM", "GRU", "Transformer"])
    parser.add_argument("--lr", type=float, default=20)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--bptt", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1111)
    parser.add_argument("--save", default=os.path.join(tempfile.gettempdir(), "word_lm_model.pt"))
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    corpus = Corpus(zen_words())
    ntokens = len(corpus.idx2word)
    train_data, val_data = batchify(corpus.train, args.batch_size), batchify(corpus.valid, 1)
    test_data = batchify(corpus.test, 1)
    model = build(args.model, ntokens)
    lr, best_val = args.lr, None
    for epoch in range(1, args.epochs + 1):
        train_loss = run_epoch(model, train_data, ntokens, args.bptt, args.batch_size, lr)
        val_loss = run_epoch(model, val_data, ntokens, args.bptt, 1)
        print(f"| epoch {epoch:3d} | lr {lr:5.2f} | train ppl {math.exp(train_loss):8.2f} | "
              f"valid ppl {math.exp(val_loss):8.2f}")
        if best_val is None or val_loss < best_val:
            with open(args.save, "wb") as f:
                torch.save(model, f)
            best_val = val_loss
        else:
            lr /= 4.0
    with open(args.save, "rb") as f:
        model = torch.load(f, weights_only=False)  # the whole model, as the example saves it: a file of our own
    if args.model in ("LSTM", "GRU"):
        model.rnn.flatten_parameters()
    test_loss = run_epoch(model, test_data, ntokens, args.bptt, 1)
    train_ppl = math.exp(run_epoch(model, train_data, ntokens, args.bptt, args.batch_size))
    print(f"| end of training | train ppl {train_ppl:8.2f} | test ppl {math.exp(test_loss):8.2f}")
    return train_ppl, math.exp(test_loss)


if __name__ == "__main__":
    main()
