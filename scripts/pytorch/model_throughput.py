"""PyTorch reference for scripts/model-throughput.ts: the same architectures as worker/src/model/
(mlp, linear, cnn, resnet18 CIFAR variant), timed the same way (forward, backward, every gradient
copied out to host arrays), so that both engines' step times can be given as ratios to PyTorch
measured in the same run on the same machine.

Protocol (one JSON object per line): prints {"torch": "<version>"} once, then for each request
{"model", "input_shape": [h, w, c] or [features], "classes", "batch_size", "threads", "steps"}
read from stdin answers {"ms": [per-step milliseconds]} (after one warm-up step).
`--memory '<request>'` instead trains one step of that request and prints {"peak_rss_mb"}.
Used only as a yardstick: nothing in the project depends on PyTorch.
"""
import json
import sys
import time

import torch
from torch import nn


def mlp(features, classes, hidden):
    layers, width = [nn.Flatten()], features
    for units in hidden:
        layers += [nn.Linear(width, units), nn.ReLU()]
        width = units
    return nn.Sequential(*layers, nn.Linear(width, classes))


def cnn(h, w, c, classes):
    conv = lambda i, o: [nn.Conv2d(i, o, 3, padding=1), nn.ReLU()]
    return nn.Sequential(
        *conv(c, 32), *conv(32, 32), nn.MaxPool2d(2),
        *conv(32, 64), *conv(64, 64), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear((h // 4) * (w // 4) * 64, 128), nn.ReLU(), nn.Linear(128, classes))


class Block(nn.Module):
    def __init__(self, i, o, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(i, o, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(o, momentum=0.1, eps=1e-5)  # Keras momentum 0.9
        self.conv2 = nn.Conv2d(o, o, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(o, momentum=0.1, eps=1e-5)
        self.shortcut = nn.Sequential()
        if stride != 1 or i != o:
            self.shortcut = nn.Sequential(nn.Conv2d(i, o, 1, stride, bias=False), nn.BatchNorm2d(o, momentum=0.1, eps=1e-5))

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


def resnet18(c, classes):
    layers, width = [nn.Conv2d(c, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()], 64
    for channels, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        layers += [Block(width, channels, stride), Block(channels, channels, 1)]
        width = channels
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes))


def build(name, shape, classes):
    if name in ("mlp", "linear"):
        features = 1
        for d in shape:
            features *= d
        return mlp(features, classes, [64, 64] if name == "mlp" else [])
    h, w, c = shape
    return cnn(h, w, c, classes) if name == "cnn" else resnet18(c, classes)


def time_steps(request):
    torch.set_num_threads(request["threads"])
    torch.manual_seed(1)
    shape, n = request["input_shape"], request["batch_size"]
    model = build(request["model"], shape, request["classes"]).train()
    x = torch.randn(n, *([shape[2], shape[0], shape[1]] if len(shape) == 3 else shape))
    y = torch.randint(0, request["classes"], (n,))
    loss_fn = nn.CrossEntropyLoss()

    def step():
        for p in model.parameters():
            p.grad = None
        loss_fn(model(x), y).backward()
        return [p.grad.numpy().copy() for p in model.parameters()]

    step()  # warm-up
    times = []
    for _ in range(request["steps"]):
        started = time.perf_counter()
        step()
        times.append((time.perf_counter() - started) * 1000)
    return times


if sys.argv[1:2] == ["--memory"]:
    # Peak memory of a process that trains one batch of the request given as the next argument.
    import resource
    time_steps(json.loads(sys.argv[2]))
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    sys.exit(0)

print(json.dumps({"torch": torch.__version__}), flush=True)
for line in sys.stdin:
    if line.strip():
        print(json.dumps({"ms": time_steps(json.loads(line))}), flush=True)
