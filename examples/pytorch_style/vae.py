"""A variational autoencoder on MNIST digits (Kingma and Welling, "Auto-Encoding Variational Bayes"), the program
of pytorch/examples' vae written the way a PyTorch user writes it, with minidl imported as torch: an encoder to
the mean and log-variance of a 20-dimensional Gaussian, the reparameterisation trick, a decoder back to 784 pixel
probabilities, and the loss as binary cross-entropy plus the KL divergence to N(0, I). After every epoch it
writes reconstructions next to their originals and 64 samples decoded from N(0, I), with save_image. One line
differs from a torch program: the dataset (the 10,000 MNIST digits bundled with minidl, so it runs offline).

    python examples/pytorch_style/vae.py                       # 10 epochs; images in results/
    python examples/pytorch_style/vae.py --epochs 2 --out /tmp/vae
"""
import argparse
import os

import minidl as torch
from minidl import nn, optim
from minidl.data import datasets, transforms
from minidl.nn import functional as F
from minidl.utils import save_image


class VAE(nn.Module):
    def __init__(self, hidden=400, latent=20):
        super().__init__()
        self.fc1 = nn.Linear(784, hidden)
        self.fc21 = nn.Linear(hidden, latent)   # the mean
        self.fc22 = nn.Linear(hidden, latent)   # the log-variance
        self.fc3 = nn.Linear(latent, hidden)
        self.fc4 = nn.Linear(hidden, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def loss_function(recon_x, x, mu, logvar):
    """Reconstruction (binary cross-entropy, summed over pixels and the batch) plus KL(q(z|x) || N(0, I)):
    -0.5 * sum(1 + log(sigma^2) - mu^2 - sigma^2)."""
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def train(model, optimizer, loader, epoch, args):
    model.train()
    train_loss = 0
    for batch_idx, (data, _) in enumerate(loader):
        data = data.to(args.device)
        optimizer.zero_grad()
        recon_batch, mu, logvar = model(data)
        loss = loss_function(recon_batch, data, mu, logvar)
        loss.backward()
        train_loss += loss.item()
        optimizer.step()
        if batch_idx % args.log_interval == 0:
            print(f"Train Epoch: {epoch} [{batch_idx * len(data)}/{len(loader.dataset)} "
                  f"({100. * batch_idx / len(loader):.0f}%)]\tLoss: {loss.item() / len(data):.6f}")
        if args.dry_run:
            break
    print(f"====> Epoch: {epoch} Average loss: {train_loss / len(loader.dataset):.4f}")


def test(model, loader, epoch, args):
    model.eval()
    test_loss = 0
    with torch.no_grad():
        for i, (data, _) in enumerate(loader):
            data = data.to(args.device)
            recon_batch, mu, logvar = model(data)
            test_loss += loss_function(recon_batch, data, mu, logvar).item()
            if i == 0 and args.out:
                n = min(data.size(0), 8)
                comparison = torch.cat([data[:n], recon_batch.view(args.batch_size, 1, 28, 28)[:n]])
                save_image(comparison.cpu(), os.path.join(args.out, f"reconstruction_{epoch}.png"), nrow=n)
    test_loss /= len(loader.dataset)
    print(f"====> Test set loss: {test_loss:.4f}")
    return test_loss


def main(argv=None):
    p = argparse.ArgumentParser(description="VAE on MNIST digits (minidl as torch)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--log-interval", type=int, default=20)
    p.add_argument("--out", default="results", help="folder for the images ('' writes none)")
    p.add_argument("--dry-run", action="store_true", help="one batch of one epoch")
    args = p.parse_args(argv)
    args.device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(args.seed)
    if args.out:
        os.makedirs(args.out, exist_ok=True)

    train_loader = torch.utils.data.DataLoader(datasets.MNISTSubset(train=True, transform=transforms.ToTensor()),
                                               batch_size=args.batch_size, shuffle=True)
    test_loader = torch.utils.data.DataLoader(datasets.MNISTSubset(train=False, transform=transforms.ToTensor()),
                                              batch_size=args.batch_size, shuffle=False)
    model = VAE().to(args.device)
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for epoch in range(1, args.epochs + 1):
        train(model, optimizer, train_loader, epoch, args)
        losses.append(test(model, test_loader, epoch, args))
        if args.out:
            with torch.no_grad():
                sample = model.decode(torch.randn(64, 20).to(args.device)).cpu()
                save_image(sample.view(64, 1, 28, 28), os.path.join(args.out, f"sample_{epoch}.png"))
        if args.dry_run:
            break
    return losses


if __name__ == "__main__":
    main()
