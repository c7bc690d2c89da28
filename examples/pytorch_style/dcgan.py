"""A deep convolutional GAN (Radford, Metz and Chintala, "Unsupervised Representation Learning with Deep
Convolutional Generative Adversarial Networks"), the program of pytorch/examples' dcgan written the way a PyTorch
user writes it, with minidl imported as torch: a generator of transposed convolutions with batch norm and ReLU, a
discriminator of strided convolutions with leaky ReLU, DCGAN's N(0, 0.02) initialisation applied with
``.apply(weights_init)``, binary cross-entropy on D's outputs against ``torch.full`` labels, and Adam at lr 2e-4
with beta1 0.5. It prints Loss_D, Loss_G, D(x) and D(G(z)) as the original does, and writes real and fixed-noise
fake samples with save_image. Sized for 28x28 digits (the original is 64x64 colour); one line differs from a torch
program: the dataset (the 10,000 MNIST digits bundled with minidl, so it runs offline).

    python examples/pytorch_style/dcgan.py                      # 5 epochs; images in results/
    python examples/pytorch_style/dcgan.py --epochs 1 --ngf 32 --ndf 32 --out /tmp/dcgan
"""
import argparse
import os

import minidl as torch
import minidl.nn as nn
import minidl.optim as optim
import minidl.utils as vutils
from minidl.data import datasets, transforms


def weights_init(m):
    """DCGAN's initialisation: conv weights from N(0, 0.02), batch-norm scales from N(1, 0.02), shifts 0."""
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        m.weight.data.normal_(0.0, 0.02)
    elif classname.find("BatchNorm") != -1:
        m.weight.data.normal_(1.0, 0.02)
        m.bias.data.fill_(0)


class Generator(nn.Module):
    def __init__(self, nz, ngf, nc=1):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 4, 7, 1, 0, bias=False),       # (ngf*4) x 7 x 7
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),  # (ngf*2) x 14 x 14
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, nc, 4, 2, 1, bias=False),       # nc x 28 x 28
            nn.Tanh(),
        )

    def forward(self, input):
        return self.main(input)


class Discriminator(nn.Module):
    def __init__(self, ndf, nc=1):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),                    # ndf x 14 x 14
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),               # (ndf*2) x 7 x 7
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, 1, 7, 1, 0, bias=False),                 # 1 x 1 x 1
            nn.Sigmoid(),
        )

    def forward(self, input):
        return self.main(input).view(-1, 1).squeeze(1)


def main(argv=None):
    p = argparse.ArgumentParser(description="DCGAN on MNIST digits (minidl as torch)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--nz", type=int, default=64, help="size of the latent vector z")
    p.add_argument("--ngf", type=int, default=32)
    p.add_argument("--ndf", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.0002)
    p.add_argument("--beta1", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=999)
    p.add_argument("--out", default="results", help="folder for the images ('' writes none)")
    p.add_argument("--dry-run", action="store_true", help="a few iterations of one epoch")
    p.add_argument("--max-iters", type=int, default=0, help="stop after this many iterations (0: no limit)")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")

    dataset = datasets.MNISTSubset(train=True, transform=transforms.Compose([
        transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))]))
    dataloader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True)

    netG = Generator(args.nz, args.ngf).to(device)
    netG.apply(weights_init)
    netD = Discriminator(args.ndf).to(device)
    netD.apply(weights_init)
    print(netG, netD, sep="\n")

    criterion = nn.BCELoss()
    fixed_noise = torch.randn(args.batch_size, args.nz, 1, 1, device=device)
    real_label, fake_label = 1, 0
    optimizerD = optim.Adam(netD.parameters(), lr=args.lr, betas=(args.beta1, 0.999))
    optimizerG = optim.Adam(netG.parameters(), lr=args.lr, betas=(args.beta1, 0.999))

    history, iters = [], 0
    for epoch in range(args.epochs):
        for i, data in enumerate(dataloader, 0):
            # (1) Update D: maximize log(D(x)) + log(1 - D(G(z)))
            netD.zero_grad()
            real_cpu = data[0].to(device)
            batch_size = real_cpu.size(0)
            label = torch.full((batch_size,), real_label, dtype=real_cpu.dtype, device=device)
            output = netD(real_cpu)
            errD_real = criterion(output, label)
            errD_real.backward()
            D_x = output.mean().item()

            noise = torch.randn(batch_size, args.nz, 1, 1, device=device)
            fake = netG(noise)
            label.fill_(fake_label)
            output = netD(fake.detach())
            errD_fake = criterion(output, label)
            errD_fake.backward()
            D_G_z1 = output.mean().item()
            errD = errD_real + errD_fake
            optimizerD.step()

            # (2) Update G: maximize log(D(G(z)))
            netG.zero_grad()
            label.fill_(real_label)  # fake labels are real for the generator's cost
            output = netD(fake)
            errG = criterion(output, label)
            errG.backward()
            D_G_z2 = output.mean().item()
            optimizerG.step()

            history.append((errD.item(), errG.item(), D_x, D_G_z1, D_G_z2))
            if i % 25 == 0:
                print(f"[{epoch}/{args.epochs}][{i}/{len(dataloader)}] Loss_D: {errD.item():.4f} "
                      f"Loss_G: {errG.item():.4f} D(x): {D_x:.4f} D(G(z)): {D_G_z1:.4f} / {D_G_z2:.4f}")
            iters += 1
            if (args.dry_run and i == 4) or iters == args.max_iters:
                break
        if args.out:
            vutils.save_image(real_cpu, os.path.join(args.out, "real_samples.png"), normalize=True)
            with torch.no_grad():
                fake = netG(fixed_noise)
            vutils.save_image(fake.detach(), os.path.join(args.out, f"fake_samples_epoch_{epoch:03d}.png"),
                              normalize=True)
        if args.dry_run or iters == args.max_iters:
            break
    return history


if __name__ == "__main__":
    main()
