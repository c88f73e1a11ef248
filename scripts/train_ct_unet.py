"""Train the CT lesion network (a small U-Net ensemble) and write it into the package as ONNX.

    pip install torch --index-url https://download.pytorch.org/whl/cpu   # the CPU build
    pip install -e ".[train]"   # training only: torch, onnx, scikit-learn
    python scripts/train_ct_unet.py [--data ../shared/data/ct/medseg2d] [--seed 0]
        [--members-dir DIR]

Trains each member of :data:`MEMBERS` on all labelled medseg2d slices and writes their average as
one ``src/celltrial/imaging/models/lesions_unet.onnx`` (run time needs onnxruntime only, see
:mod:`celltrial.imaging.network`). The network sees each slice resized to ``SIZE`` x ``SIZE``
with :func:`celltrial.imaging.network.resize_image` (as at run time), takes approximate HU
(clipping and scaling are part of the exported graph) and returns softmax probabilities of (none,
ground-glass, consolidation), each member's averaged with those of the mirrored slice, then the
members' averaged. Training: heavy augmentation (flips, rotation, scaling, a smooth elastic warp,
contrast, gamma, noise, blur), weighted cross-entropy plus soft Dice, AdamW with warm-up and
cosine decay. About 15 min a member on one CPU core. Seeded; cross-validated accuracy:
benchmarks/bench_ct_accuracy.py."""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass, replace
from itertools import pairwise
from pathlib import Path

import numpy as np

from celltrial.imaging.network import SIZE, resize_image

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ct" / "medseg2d"
OUTPUT = ROOT / "src" / "celltrial" / "imaging" / "models" / "lesions_unet.onnx"
#: HU window the network clips its input to (the labelled slices saturate at +150 HU).
HU_LOW, HU_HIGH = -1100.0, 150.0


# --------------------------------------------------------------------------- settings
@dataclass
class Settings:
    """Training settings (defaults are the ones used for the shipped variant)."""

    base: int = 12  # channels of the first U-Net level (doubling per level, 4 down-steps)
    iterations: int = 800  # optimiser steps
    batch: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 50  # linear warm-up steps before the cosine decay
    class_weights: tuple[float, float, float] = (1.0, 2.0, 2.0)  # cross-entropy weights
    dice_weight: float = 1.0  # weight of the soft-Dice term (GGO, consolidation, lesion)
    image_dice: float = 0.0  # share of the soft Dice taken per slice (the rest over the batch)
    rotate_deg: float = 15.0
    scale: tuple[float, float] = (0.85, 1.15)
    elastic: float = 0.03  # amplitude of the smooth random displacement (normalised units)
    vflip: bool = True  # also flip vertically (horizontal flips always)
    seed: int = 0
    threads: int = 2


# --------------------------------------------------------------------------- model
def build_model(base: int = 16):
    """A 4-level U-Net (BatchNorm, ReLU, transposed-conv up-sampling), 1 input, 3 classes."""
    import torch
    from torch import nn

    def block(cin, cout):
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )

    class UNet(nn.Module):
        """U-Net returning logits; :meth:`probabilities` adds HU normalisation and softmax."""

        def __init__(self, base: int):
            super().__init__()
            ch = [base, base * 2, base * 4, base * 8, base * 16]
            self.down = nn.ModuleList(
                [block(1, ch[0])] + [block(a, b) for a, b in pairwise(ch[:-1])]
            )
            self.bottom = block(ch[3], ch[4])
            self.up = nn.ModuleList(
                nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2) for i in range(4)
            )
            self.dec = nn.ModuleList(block(2 * ch[i], ch[i]) for i in range(4))
            self.head = nn.Conv2d(ch[0], 3, 1)
            self.pool = nn.MaxPool2d(2)

        def forward(self, x):  # x: normalised image (N, 1, S, S)
            skips = []
            for layer in self.down:
                x = layer(x)
                skips.append(x)
                x = self.pool(x)
            x = self.bottom(x)
            for i in reversed(range(4)):
                x = self.dec[i](torch.cat([self.up[i](x), skips[i]], dim=1))
            return self.head(x)

    return UNet(base)


def normalize_hu(hu):
    """Clip HU to [HU_LOW, HU_HIGH] and map to [-1, 1] (works on numpy arrays and tensors)."""
    mid, half = (HU_HIGH + HU_LOW) / 2, (HU_HIGH - HU_LOW) / 2
    if isinstance(hu, np.ndarray):
        return ((np.clip(hu, HU_LOW, HU_HIGH) - mid) / half).astype(np.float32)
    return (hu.clamp(HU_LOW, HU_HIGH) - mid) / half


class _Exported:
    """Factory for the export wrapper: HU in, softmax probabilities out, horizontal-flip TTA,
    averaged over the members of an ensemble."""

    @staticmethod
    def wrap(models, tta: bool = True):
        import torch
        from torch import nn

        class Wrapper(nn.Module):
            def __init__(self):
                super().__init__()
                self.members = nn.ModuleList(models if isinstance(models, list) else [models])

            def forward(self, hu):
                x = normalize_hu(hu)
                total = 0
                for member in self.members:
                    p = torch.softmax(member(x), dim=1)
                    if tta:
                        q = torch.softmax(member(torch.flip(x, dims=[3])), dim=1)
                        p = 0.5 * (p + torch.flip(q, dims=[3]))
                    total = total + p
                return total / len(self.members)

        return Wrapper().eval()


# --------------------------------------------------------------------------- data
def prepare(slices) -> tuple[np.ndarray, np.ndarray]:
    """Normalised images ``(N, 1, S, S)`` float32 and labels ``(N, S, S)`` int64 at SIZE."""
    xs = [normalize_hu(resize_image(s.hu.astype(np.float32), (SIZE, SIZE)))[None] for s in slices]
    ys = [resize_image(s.labels, (SIZE, SIZE), order=0).astype(np.int64) for s in slices]
    return np.stack(xs), np.stack(ys)


def augment(x, y, settings: Settings, gen):
    """Random flips, rotation, scaling, translation, smooth elastic warp and intensity changes.

    ``x``: (B, 1, S, S) normalised images; ``y``: (B, S, S) labels; ``gen``: torch Generator.
    """
    import torch
    import torch.nn.functional as F

    b = x.shape[0]

    def u(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*(shape or (b,)), generator=gen)

    angle = u(-1, 1) * math.radians(settings.rotate_deg)
    scale = torch.exp(u(math.log(settings.scale[0]), math.log(settings.scale[1])))
    aniso = torch.exp(u(-0.05, 0.05))
    sx, sy = scale * aniso, scale / aniso
    fx = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    fy = (
        torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
        if settings.vflip
        else torch.ones(b)
    )
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos / sx * fx, -sin / sx
    theta[:, 1, 0], theta[:, 1, 1] = sin / sy * fy, cos / sy
    theta[:, 0, 2], theta[:, 1, 2] = u(-0.08, 0.08), u(-0.08, 0.08)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    if settings.elastic > 0:
        coarse = torch.randn(b, 2, 6, 6, generator=gen) * settings.elastic
        field = F.interpolate(coarse, size=x.shape[-2:], mode="bicubic", align_corners=False)
        grid = grid + field.permute(0, 2, 3, 1)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    y = F.grid_sample(
        y[:, None].float(), grid, mode="nearest", padding_mode="border", align_corners=False
    )
    y = y[:, 0].long()
    # intensity: contrast, brightness, gamma (on [0, 1]), noise, occasional blur
    x = x * u(0.85, 1.15)[:, None, None, None] + u(-0.1, 0.1)[:, None, None, None]
    z = ((x + 1) / 2).clamp(0, 1)
    gamma = torch.exp(u(-0.3, 0.3))[:, None, None, None]
    x = z**gamma * 2 - 1
    x = x + torch.randn(x.shape, generator=gen) * u(0, 0.05)[:, None, None, None]
    blur = torch.rand(b, generator=gen) < 0.2
    if blur.any():
        k = torch.tensor([0.25, 0.5, 0.25])
        k2 = (k[:, None] * k[None, :])[None, None]
        x[blur] = F.conv2d(F.pad(x[blur], (1, 1, 1, 1), mode="replicate"), k2)
    return x, y


def compute_loss(logits, y, settings: Settings):
    """Weighted cross-entropy + soft Dice of GGO, consolidation and any lesion.

    The Dice is taken over the whole batch, per slice (as the benchmark scores: a slice without
    consolidation that gets some loses its whole score), or a mix of both (``image_dice``).
    """
    import torch
    import torch.nn.functional as F

    ce = F.cross_entropy(logits, y, weight=torch.tensor(settings.class_weights))
    p = torch.softmax(logits, dim=1)
    onehot = F.one_hot(y, 3).permute(0, 3, 1, 2).float()
    terms = []
    for pp, tt in (
        (p[:, 1], onehot[:, 1]),
        (p[:, 2], onehot[:, 2]),
        (p[:, 1] + p[:, 2], onehot[:, 1] + onehot[:, 2]),
    ):
        dice = 1 - (2 * (pp * tt).sum() + 1) / (pp.sum() + tt.sum() + 1)
        if settings.image_dice:
            overlap, total = (pp * tt).sum(dim=(1, 2)), pp.sum(dim=(1, 2)) + tt.sum(dim=(1, 2))
            per_slice = (1 - (2 * overlap + 1) / (total + 1)).mean()
            dice = (1 - settings.image_dice) * dice + settings.image_dice * per_slice
        terms.append(dice)
    return ce + settings.dice_weight * sum(terms) / len(terms)


# --------------------------------------------------------------------------- training
def train_unet(slices, settings: Settings, *, log=print):
    """Train a U-Net on ``slices`` (LabelledSlice list) and return it in eval mode."""
    import torch

    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    x_all, y_all = (torch.from_numpy(a) for a in prepare(slices))
    model = build_model(settings.base)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)

    def lr_at(step):
        if step < settings.warmup:
            return (step + 1) / settings.warmup
        t = (step - settings.warmup) / max(1, settings.iterations - settings.warmup)
        return 0.5 * (1 + math.cos(math.pi * t)) * 0.99 + 0.01

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    n = len(slices)
    order = torch.randperm(n, generator=gen)
    pos, start, running = 0, time.time(), []
    model.train()
    for step in range(settings.iterations):
        if pos + settings.batch > n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos : pos + settings.batch]
        pos += settings.batch
        x, y = augment(x_all[idx], y_all[idx], settings, gen)
        loss = compute_loss(model(x), y, settings)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        running.append(loss.item())
        if (step + 1) % 100 == 0 or step + 1 == settings.iterations:
            log(
                f"step {step + 1}/{settings.iterations} loss {np.mean(running):.4f} "
                f"lr {sched.get_last_lr()[0]:.2e} {time.time() - start:.0f}s"
            )
            running = []
    return model.eval()


def export_onnx(
    models, path: Path, *, tta: bool = True, half: bool = False, opset: int = 17
) -> None:
    """Write the model, or the average of a list of members (HU in ``(N, 1, SIZE, SIZE)``,
    probabilities out), as ONNX; ``half`` stores its weights in half precision."""
    import torch

    wrapped = _Exported.wrap(models, tta=tta)
    dummy = torch.zeros(1, 1, SIZE, SIZE)
    torch.onnx.export(
        wrapped,
        (dummy,),
        str(path),
        input_names=["hu"],
        output_names=["probabilities"],
        dynamic_axes={"hu": {0: "n"}, "probabilities": {0: "n"}},
        opset_version=opset,
        dynamo=False,
    )
    if half:
        store_weights_in_half_precision(path)


def store_weights_in_half_precision(path: Path) -> None:
    """Rewrite the ONNX file at ``path`` with its float32 weights stored as float16, each cast
    back to float32 by a node in front of the graph (onnxruntime folds those casts when it loads
    the model, so the network still computes in float32): half the size on disk, probabilities
    within about 1e-3 of the float32 weights'."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    kept, casts = [], []
    for weight in graph.initializer:
        values = numpy_helper.to_array(weight)
        if values.dtype != np.float32 or values.size <= 16:
            kept.append(weight)
            continue
        stored = numpy_helper.from_array(values.astype(np.float16), f"{weight.name}_float16")
        kept.append(stored)
        casts.append(helper.make_node("Cast", [stored.name], [weight.name], to=TensorProto.FLOAT))
    nodes = list(graph.node)
    del graph.initializer[:], graph.node[:]
    graph.initializer.extend(kept)
    graph.node.extend(casts + nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


#: The shipped network averages the probabilities of these members: the same U-Net trained with
#: other seeds and with its soft Dice per slice (weights stored in half precision, to stay within
#: the 10 MB for shipped models). Chosen by cross-validation
#: (benchmarks/bench_ct_accuracy.py prints each member alone and their average).
MEMBERS: tuple[Settings, ...] = (
    Settings(seed=0),
    Settings(seed=200, image_dice=1.0),
    Settings(seed=300, image_dice=1.0),
)


def _member_key(settings: Settings) -> str:
    """A name for a trained member: its settings, except the CPU threads it was trained with."""
    import hashlib

    kept = {k: v for k, v in asdict(settings).items() if k != "threads"}
    return hashlib.sha256(repr(sorted(kept.items())).encode()).hexdigest()[:12]


def train_member(slices, settings: Settings, *, members_dir: Path | None, log=print):
    """Train one member, or load it from ``members_dir`` when it was trained there with the same
    settings (so that a change of one member does not retrain the others). The training code and
    data are not part of that match: empty the folder after changing either."""
    import torch

    kept = members_dir / f"member-{_member_key(settings)}.pt" if members_dir else None
    if kept is not None and kept.exists():
        log(f"member seed {settings.seed}: loaded from {kept}")
        model = build_model(settings.base)
        model.load_state_dict(torch.load(kept, weights_only=True)["state_dict"])
        return model.eval()
    model = train_unet(slices, settings, log=log)
    if kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": model.state_dict(), "settings": asdict(settings)}, kept)
    return model


def main(argv=None) -> None:
    from celltrial.imaging.learning import read_medseg_slices

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=OUTPUT)
    parser.add_argument("--iterations", type=int, default=Settings.iterations)
    parser.add_argument("--base", type=int, default=Settings.base)
    parser.add_argument("--seed", type=int, default=0, help="added to each member's seed")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--no-tta", action="store_true", help="export without flip averaging")
    parser.add_argument(
        "--members-dir",
        type=Path,
        help="keep each trained member here, and reuse those trained there with the same "
        "settings (empty it after changing the training code or data)",
    )
    args = parser.parse_args(argv)
    slices = read_medseg_slices(args.data)
    models = []
    for member in MEMBERS:
        settings = replace(
            member,
            iterations=args.iterations,
            base=args.base,
            seed=member.seed + args.seed,
            threads=args.threads,
        )
        print(f"{len(slices)} slices; settings {asdict(settings)}", flush=True)
        models.append(
            train_member(
                slices,
                settings,
                members_dir=args.members_dir,
                log=lambda m: print(m, flush=True),
            )
        )
    export_onnx(models, args.out, tta=not args.no_tta, half=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, {len(models)} members)")


if __name__ == "__main__":
    main()
