"""The PyTorch baseline at its best: a plain training loop, three ways.

    python benchmarks/baseline_torch.py lenet5 --dataset mnist-5k --epochs 10 [--channels-last]
        [--compile] [--device cpu|cuda]

Same network (LeNet-5 or the seed's simple CNN), same split of the same images, same batch size,
optimizer, learning rate and epochs as `kcnn train`; Glorot-uniform weights and zero biases as
Keras initialises them. The images are converted to float tensors once, before the clock starts.
The loop does the work Keras's `fit` does: each step's loss *and* accuracy, summed on the device
and read once per epoch (no host sync per step, as `loss.item()` in a tutorial loop would make).
`--channels-last` keeps images and weights in NHWC memory (oneDNN's and cuDNN's preferred
layout); `--compile` runs the model through `torch.compile` (inductor: it needs a C compiler and
Python's headers; if it cannot build, the JSON line says why instead of a time). The first epoch
includes compiling, as kcnn's includes tracing. Prints one JSON line: per-epoch training seconds,
images/second, test accuracy, the parameter count.
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
    elif arch == "resnet18":
        return resnet18(channels, classes)
    else:
        raise SystemExit(f"unknown architecture {arch}")
    model = nn.Sequential(*layers)
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def resnet18(channels: int, classes: int):
    """ResNet-18 as kcnn builds it (kcnn/models/architectures/resnet.py, torchvision's layout):
    7×7 stem, 3×3 max pool, four stages of two basic blocks, 1×1 projections where the shape
    changes, no conv biases, global average pooling. For the GPU section (torchvision is not
    needed)."""
    from torch import nn

    def conv_bn(cin, cout, k, stride):
        return [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.body = nn.Sequential(
                *conv_bn(cin, cout, 3, stride), nn.ReLU(), *conv_bn(cout, cout, 3, 1)
            )
            self.skip = (
                nn.Sequential(*conv_bn(cin, cout, 1, stride))
                if stride != 1 or cin != cout
                else nn.Identity()
            )

        def forward(self, x):
            return (self.body(x) + self.skip(x)).relu()

    layers = [*conv_bn(channels, 64, 7, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for stage, width in enumerate((64, 128, 256, 512)):
        for i in range(2):
            layers.append(Block(cin, width, 2 if (i == 0 and stage > 0) else 1))
            cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes)]
    return nn.Sequential(*layers)


def contestant_name(channels_last: bool, compiled: bool, mixed: bool = False) -> str:
    return (
        "pytorch"
        + (" compiled" if compiled else "")
        + (" channels_last" if channels_last else "")
        + (" mixed precision" if mixed else "")
    )


def arguments(argv=None):
    import argparse

    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--channels-last", action="store_true")
    extra.add_argument("--compile", action="store_true")
    extra.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    extra.add_argument(
        "--mixed-precision",
        action="store_true",
        help="autocast: float16 with loss scaling on a GPU, bfloat16 on a CPU (as Keras's policy)",
    )
    own, rest = extra.parse_known_args(argv)
    args, split = common.baseline_setup(rest)
    return own, args, split


def main(argv=None) -> dict:
    own, args, (x_train, y_train, x_test, y_test, classes) = arguments(argv)
    import torch
    from torch import nn

    name = contestant_name(own.channels_last, own.compile, own.mixed_precision)
    torch.manual_seed(args.seed)
    # TensorFlow takes a GPU by itself when there is one; PyTorch is told to, so that on a GPU
    # machine the same command compares the two there.
    device = torch.device(own.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    memory = torch.channels_last if own.channels_last else torch.contiguous_format

    def to_nchw(x):
        t = torch.from_numpy(common.as_model_input(x)).permute(0, 3, 1, 2)
        return t.contiguous(memory_format=memory).to(device)

    xs, ys = to_nchw(x_train), torch.from_numpy(y_train.astype("int64")).to(device)
    xt, yt = to_nchw(x_test), torch.from_numpy(y_test.astype("int64")).to(device)
    model = build(args.arch, xs.shape[1], classes).to(device, memory_format=memory)
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(args.seed)
    step_model = torch.compile(model) if own.compile else model
    half = torch.float16 if device.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler(
        device.type, enabled=own.mixed_precision and half == torch.float16
    )

    def autocast():
        return torch.autocast(device.type, dtype=half, enabled=own.mixed_precision)

    def one_epoch():
        model.train()
        order = torch.randperm(len(ys), generator=generator).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        for i in range(0, len(ys), args.batch_size):
            idx = order[i : i + args.batch_size]
            xb, yb = xs[idx].contiguous(memory_format=memory), ys[idx]
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                logits = step_model(xb)
                loss = loss_fn(logits.float(), yb)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            # what Keras's fit reports, kept on the device: no host sync per step
            loss_sum += loss.detach() * len(idx)
            correct += (logits.detach().argmax(1) == yb).sum()
        # one sync per epoch (on a GPU this also waits for the epoch's last kernels)
        return float(loss_sum) / len(ys), int(correct) / len(ys)

    epoch_seconds, losses, accuracies = [], [], []
    try:
        for _ in range(args.epochs):
            start = time.perf_counter()
            loss, accuracy = one_epoch()
            epoch_seconds.append(time.perf_counter() - start)
            losses.append(loss)
            accuracies.append(accuracy)
    except Exception as e:  # torch.compile cannot build here: say why, as the result
        if not own.compile:
            raise
        result = {"contestant": name, "torch": torch.__version__, "params": params,
                  "error": f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"}  # fmt: skip
        print(json.dumps(result))
        return result
    model.eval()
    with torch.inference_mode(), autocast():  # one pass, batched as Keras's evaluate batches
        hits = sum(
            int(
                (
                    step_model(xt[i : i + args.batch_size]).argmax(1) == yt[i : i + args.batch_size]
                ).sum()
            )
            for i in range(0, len(yt), args.batch_size)
        )
    n = len(ys)
    result = {
        "contestant": name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "params": params,
        "images": n,
        "epoch_seconds": epoch_seconds,
        "images_per_second": n * args.epochs / sum(epoch_seconds),
        "first_epoch_images_per_second": n / epoch_seconds[0],
        "later_images_per_second": n * (args.epochs - 1) / sum(epoch_seconds[1:])
        if args.epochs > 1
        else None,
        "test_accuracy": hits / len(yt),
        "final_loss": losses[-1],
        "final_accuracy": accuracies[-1],
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
