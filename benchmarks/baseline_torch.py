"""The PyTorch baseline: a plain eager training loop, the way the PyTorch tutorials write one.

    python benchmarks/baseline_torch.py lenet5 --dataset mnist-5k --epochs 10

Same network (LeNet-5 or the seed's simple CNN), same split of the same images, same batch size,
optimizer, learning rate and epochs as `kcnn train`; Glorot-uniform weights and zero biases as
Keras initialises them. The images are converted to float tensors once, before the clock starts.
Prints one JSON line: per-epoch training seconds, images/second and test accuracy.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def build(arch: str, channels: int, classes: int):
    from torch import nn

    if arch == "lenet5":
        layers = [
            nn.Conv2d(channels, 6, 5), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(16, 120, 5), nn.Tanh(), nn.Flatten(),
            nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, classes),
        ]  # fmt: skip
    elif arch == "simple-cnn":
        layers = [
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            # Keras flattens channels-last: the same features, in another order
            nn.Flatten(), nn.Linear(64 * 8 * 8, 128), nn.ReLU(), nn.Linear(128, classes),
        ]  # fmt: skip
    else:
        raise SystemExit(f"unknown architecture {arch}")
    model = nn.Sequential(*layers)
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def main(argv=None) -> dict:
    args, (x_train, y_train, x_test, y_test, classes) = common.baseline_setup(argv)
    import torch
    from torch import nn

    torch.manual_seed(args.seed)
    # TensorFlow takes a GPU by itself when there is one; PyTorch is told to, so that on a GPU
    # machine the same command compares the two there.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    to_nchw = lambda x: (  # noqa: E731
        torch.from_numpy(common.as_model_input(x)).permute(0, 3, 1, 2).contiguous().to(device)
    )
    xs, ys = to_nchw(x_train), torch.from_numpy(y_train.astype("int64")).to(device)
    xt, yt = to_nchw(x_test), torch.from_numpy(y_test.astype("int64")).to(device)
    model = build(args.arch, xs.shape[1], classes).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(args.seed)

    epoch_seconds, losses = [], []
    for _ in range(args.epochs):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(ys), generator=generator).to(device)
        total = 0.0
        for i in range(0, len(ys), args.batch_size):
            idx = order[i : i + args.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(xs[idx]), ys[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)  # what a tutorial loop logs; Keras logs it too
        epoch_seconds.append(time.perf_counter() - start)
        losses.append(total / len(ys))
    model.eval()
    with torch.no_grad():
        accuracy = float((model(xt).argmax(1) == yt).float().mean())
    result = {
        "contestant": "pytorch",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "images": len(ys),
        "epoch_seconds": epoch_seconds,
        "images_per_second": len(ys) * args.epochs / sum(epoch_seconds),
        "first_epoch_images_per_second": len(ys) / epoch_seconds[0],
        "later_images_per_second": len(ys) * (args.epochs - 1) / sum(epoch_seconds[1:])
        if args.epochs > 1
        else None,
        "test_accuracy": accuracy,
        "final_loss": losses[-1],
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
