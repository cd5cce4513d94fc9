"""Train the small CNN baseline matcher on synthetic faces (CPU) and export it to ONNX.

Usage: pip install torch==2.13.0   # the build script's own dependency, never the harness's
       python models/cnn/build.py [--identities 1500] [--captures 5] [--epochs 8]

Data: `facelab synth` with seed 9002 (disjoint from the tests', the benchmark's and the
eigenface's seeds), aligned to 64x64 RGB with the five landmarks. Network: four
conv-BN-ReLU stages (32-64-128-128 channels) with max pooling, global average pooling
and a linear 128-d embedding; loss: a normalised softmax with an additive cosine margin
(CosFace, s=30, m=0.25) over the training identities. Export: ONNX opset 17 through
torch.onnx (TorchScript exporter), batch-normalisation folded; only operators the import
gate allows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from facelab.bench._align import align
from facelab.synth import SynthConfig, write_dataset
from facelab.vault.dataset import read_dataset

HERE = Path(__file__).resolve().parent
SIZE = 64


def load(ds: Path) -> tuple[np.ndarray, np.ndarray]:
    xs, ys, ids = [], [], {}
    for it in read_dataset(ds):
        img = cv2.imdecode(np.frombuffer(it.png, np.uint8), cv2.IMREAD_COLOR_RGB)
        lm = np.array(
            [[float(it.row[f"lm{i}_x"]), float(it.row[f"lm{i}_y"])] for i in range(5)], np.float32
        )
        xs.append(align(img, lm, (SIZE, SIZE)))
        ys.append(ids.setdefault(it.row["subject_id"], len(ids)))
    x = (np.stack(xs).astype(np.float32) - 127.5) / 128.0
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)), np.array(ys, np.int64)


class Net(nn.Module):
    def __init__(self, dim: int = 128):
        super().__init__()

        def stage(a: int, b: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(a, b, 3, padding=1, bias=False),
                nn.BatchNorm2d(b),
                nn.ReLU(inplace=True),
                nn.Conv2d(b, b, 3, padding=1, bias=False),
                nn.BatchNorm2d(b),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )

        self.features = nn.Sequential(stage(3, 32), stage(32, 64), stage(64, 128), stage(128, 128))
        self.embed = nn.Linear(128, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.features(x).mean(dim=(2, 3)))


class CosFace(nn.Module):
    def __init__(self, dim: int, classes: int, s: float = 30.0, m: float = 0.25):
        super().__init__()
        self.w = nn.Parameter(torch.randn(classes, dim) * 0.01)
        self.s, self.m = s, m

    def forward(self, e: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        cos = nn.functional.normalize(e) @ nn.functional.normalize(self.w).T
        logits = self.s * (cos - self.m * nn.functional.one_hot(y, cos.shape[1]))
        return nn.functional.cross_entropy(logits, y)


def train(x: np.ndarray, y: np.ndarray, epochs: int, seed: int = 0) -> Net:
    torch.manual_seed(seed)
    net, head = Net(), CosFace(128, int(y.max()) + 1)
    opt = torch.optim.AdamW([*net.parameters(), *head.parameters()], lr=2e-3, weight_decay=5e-4)
    steps = epochs * (len(x) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    rng = np.random.default_rng(seed)
    for ep in range(epochs):
        t0, total = time.time(), 0.0
        order = rng.permutation(len(x))
        net.train()
        for i in range(len(x) // 128):
            idx = torch.from_numpy(order[i * 128 : (i + 1) * 128])
            xb = xt[idx]
            if rng.random() < 0.5:
                xb = torch.flip(xb, dims=[3])  # mirror images: same person
            loss = head(net(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        print(
            f"epoch {ep + 1}/{epochs}: loss {total / (len(x) // 128):.3f} "
            f"({time.time() - t0:.0f} s)",
            flush=True,
        )
    return net.eval()


def export(net: Net, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, 3, SIZE, SIZE)
    torch.onnx.export(
        net,
        dummy,
        str(out / "model.onnx"),
        input_names=["x"],
        output_names=["template"],
        opset_version=17,
        dynamo=False,
        dynamic_axes={"x": {0: "N"}, "template": {0: "N"}},
        do_constant_folding=True,
    )
    (out / "model.json").write_text(
        json.dumps(
            {
                "name": "cnn",
                "version": "1.0.0",
                "input": {
                    "size": [SIZE, SIZE],
                    "layout": "NCHW",
                    "channels": "RGB",
                    "mean": 127.5,
                    "std": 128.0,
                },
                "output": {"dim": 128},
                "similarity": "cosine",
            },
            indent=2,
        )
        + "\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--identities", type=int, default=1500)
    ap.add_argument("--captures", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp(prefix="facelab-cnn-"))
    try:
        write_dataset(
            SynthConfig(identities=args.identities, captures=args.captures, seed=9002), tmp / "ds"
        )
        x, y = load(tmp / "ds")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(x)} training images of {int(y.max()) + 1} identities", flush=True)
    net = train(x, y, args.epochs)
    export(net, args.out)
    print(f"wrote {args.out / 'model.onnx'} ({(args.out / 'model.onnx').stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
