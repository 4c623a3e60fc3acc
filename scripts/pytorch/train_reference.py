"""PyTorch reference for `make experiment` with EXPERIMENT_REFERENCE=pytorch (scripts/experiment.ts):
the job the workers run — the same model (worker/src/model/mlp.ts: 784-64-64-10 ReLU, or the
linear model), the same normalisation of the same files, the same batch size, plain SGD at the same
learning rate — trained in one process on `--threads` threads, evaluated on the whole test set after
every epoch as the workers do. So a chart can put this project's runs and a single PyTorch process
on one time axis.

Prints one JSON object per line: {"torch": version, "threads": n} first, then after each epoch
{"epoch", "time_ms" (Unix ms), "test_accuracy", "test_loss", "train_loss"}. Reads the IDX files
(gzip or not) from `--data`. Used only as a yardstick: nothing in the project depends on PyTorch.
"""
import argparse
import gzip
import json
import os
import time

import numpy as np
import torch
from torch import nn

FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
# Per-dataset normalisation, as worker/src/data/catalog.ts has it.
NORMALISATION = {"fashion-mnist": (0.286, 0.353), "mnist": (0.1307, 0.3081)}


def read_idx(directory, name):
    for candidate in (name + ".gz", name):
        path = os.path.join(directory, candidate)
        if os.path.exists(path):
            with (gzip.open(path) if candidate.endswith(".gz") else open(path, "rb")) as f:
                raw = f.read()
            rank = raw[3]
            dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank)]
            return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)
    raise SystemExit(f"{directory}: no {name}[.gz]")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--dataset", default="fashion-mnist", choices=sorted(NORMALISATION))
    p.add_argument("--model", default="mlp", choices=["mlp", "linear"])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    print(json.dumps({"torch": torch.__version__, "threads": a.threads}), flush=True)
    mean, std = NORMALISATION[a.dataset]
    norm = lambda x: torch.from_numpy(((x.reshape(len(x), -1).astype(np.float32) / 255) - mean) / std)
    train_x, test_x = norm(read_idx(a.data, FILES["train_x"])), norm(read_idx(a.data, FILES["test_x"]))
    train_y = torch.from_numpy(read_idx(a.data, FILES["train_y"]).astype(np.int64))
    test_y = torch.from_numpy(read_idx(a.data, FILES["test_y"]).astype(np.int64))

    hidden = [64, 64] if a.model == "mlp" else []
    layers, width = [], train_x.shape[1]
    for units in hidden:
        layers += [nn.Linear(width, units), nn.ReLU()]
        width = units
    model = nn.Sequential(*layers, nn.Linear(width, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=a.learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(a.seed)

    for epoch in range(a.epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=generator)
        total, seen = 0.0, 0
        for start in range(0, len(order) - a.batch_size + 1, a.batch_size):
            idx = order[start : start + a.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(train_x[idx]), train_y[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        model.eval()
        with torch.no_grad():
            logits = model(test_x)
            test_loss = loss_fn(logits, test_y).item()
            accuracy = (logits.argmax(1) == test_y).float().mean().item()
        print(json.dumps({"epoch": epoch, "time_ms": time.time() * 1000, "test_accuracy": accuracy, "test_loss": test_loss, "train_loss": total / seen}), flush=True)


if __name__ == "__main__":
    main()
