"""A tiny GPT that learns to add two-digit numbers, written as a torch user writes a minGPT/nanoGPT-style model (token
and position embeddings, pre-norm blocks of causal self-attention and an MLP, a tied-free head, AdamW with weight
decay on matrices only, gradient clipping), with minidl imported as torch; with `import torch` it runs under torch.

A problem "a+b=" is the digits of a and b; the model writes the digits of a + b reversed (lowest first, as people
add), one token at a time. Causal attention uses F.scaled_dot_product_attention where the library has it (nanoGPT's
"flash" path), else the explicit softmax of masked scores.

    python examples/pytorch_style/tiny_gpt.py               # about 1,500 steps: most sums right
    python examples/pytorch_style/tiny_gpt.py --steps 300 --eval 200
"""
import argparse
import math

import minidl as torch
import minidl.nn as nn
import minidl.nn.functional as F

DIGITS = 2


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head, block_size):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.n_head = n_head
        self.flash = hasattr(F, "scaled_dot_product_attention")
        self.register_buffer("bias", torch.tril(torch.ones(block_size, block_size)).view(1, 1, block_size, block_size))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if self.flash:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
            y = F.softmax(att, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class Block(nn.Module):
    def __init__(self, n_embd, n_head, block_size):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, block_size)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size=10, block_size=3 * DIGITS, n_layer=2, n_head=4, n_embd=48):
        super().__init__()
        self.block_size = block_size
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.blocks = nn.ModuleList([Block(n_embd, n_head, block_size) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx, targets=None):
        T = idx.size(1)
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss

    def configure_optimizer(self, lr, weight_decay=0.1):
        decay = [p for p in self.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.parameters() if p.dim() < 2]
        return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                  {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))

    @torch.no_grad()
    def generate(self, idx, n):
        for _ in range(n):
            logits, _ = self(idx[:, -self.block_size:])
            idx = torch.cat((idx, logits[:, -1, :].argmax(dim=-1, keepdim=True)), dim=1)
        return idx


def digits(n, width):
    return [int(c) for c in str(n).zfill(width)]


def encode(a, b):
    """Input and target token rows of a + b: the digits of a, of b, then of the sum reversed; only the sum is
    predicted (targets -1 elsewhere)."""
    s = digits(a, DIGITS) + digits(b, DIGITS) + digits(a + b, DIGITS + 1)[::-1]
    x, y = s[:-1], s[1:]
    y = [-1] * (2 * DIGITS - 1) + y[2 * DIGITS - 1:]
    return x, y


def get_batch(batch_size, generator=None):
    n = 10 ** DIGITS
    ab = torch.randint(0, n, (batch_size, 2), generator=generator)
    rows = [encode(a, b) for a, b in ab.tolist()]
    return torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])


def accuracy(model, count=500, generator=None):
    """The fraction of random problems whose sum the model writes exactly right."""
    n = 10 ** DIGITS
    ab = torch.randint(0, n, (count, 2), generator=generator)
    idx = torch.tensor([digits(a, DIGITS) + digits(b, DIGITS) for a, b in ab.tolist()])
    out = model.generate(idx, DIGITS + 1)[:, 2 * DIGITS:].flip(1)  # the sum's digits, highest first
    want = torch.tensor([digits(a + b, DIGITS + 1) for a, b in ab.tolist()])
    return (out == want).all(dim=1).float().mean().item()


def train(model, steps, lr=1e-3, batch_size=64, batches=None, log_every=100):
    """AdamW steps with gradient clipping; returns the list of losses. ``batches`` (an iterator of (x, y)) replaces
    the random batches (tests feed both engines the same ones)."""
    opt = model.configure_optimizer(lr)
    model.train()
    losses = []
    for step in range(steps):
        x, y = next(batches) if batches is not None else get_batch(batch_size)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if log_every and step % log_every == 0:
            print(f"step {step}: loss {loss:.4f}")
    return losses


def main(argv=None):
    parser = argparse.ArgumentParser(description="a tiny GPT that learns two-digit addition")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval", type=int, default=500, help="problems in the final test")
    parser.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    model = GPT()
    print(f"{sum(p.numel() for p in model.parameters())} parameters")
    losses = train(model, args.steps, args.lr)
    model.eval()
    acc = accuracy(model, args.eval)
    print(f"final loss {losses[-1]:.4f}; {100 * acc:.1f}% of {args.eval} random sums right")
    return losses, acc


if __name__ == "__main__":
    main()
