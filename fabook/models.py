"""Network architectures, built from plain ``torch.nn`` layers.

A learning rule is applied afterwards by :func:`fabook.convert`, which replaces every ``nn.Linear`` and
``nn.Conv2d`` with its rule layer, so one architecture serves every rule. That is also why the 1-D network
for series is made of ``nn.Conv2d`` with ``(1, k)`` kernels rather than ``nn.Conv1d``.

Initialization is PyTorch's default (Kaiming-uniform) for ``mlp``, ``cnn`` and ``cnn1d``; the three ResNets
use torchvision's ResNet scheme (convolutions Kaiming-normal, fan-out; BatchNorm weight 1, bias 0); ``lenet``
BioTorch's (Xavier-uniform weights, zero biases).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

MODELS = ("mlp", "cnn", "cnn1d", "resnet20", "resnet18", "resnet50", "deepcnn", "deepcnn-res", "lenet")
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
DEFAULT_WIDTH = {"mlp": 256, "cnn": 32, "cnn1d": 32, "deepcnn": 16, "deepcnn-res": 16}
DEFAULT_DEPTH = {"mlp": 2, "cnn": 2, "cnn1d": 3, "resnet20": 20, "deepcnn": 8, "deepcnn-res": 8}
MIN_IMAGE_SIZE = 8
SMALL_IMAGE_SIZE = 64  # below this, resnet18/resnet50 get the CIFAR stem
SERIES_KERNEL = 7
LENET_SIZE = 32

_ACCEPTED_SHAPES = {
    "mlp": "any shape (flattened)",
    "cnn": f"images (C, H, W) with H, W >= {MIN_IMAGE_SIZE}",
    "cnn1d": "series (C, L)",
    "lenet": f"images (C, H, W) with H, W >= {MIN_IMAGE_SIZE} (resized to 32x32)",
    "resnet20": f"images (C, H, W) with H, W >= {MIN_IMAGE_SIZE}",
    "resnet18": f"images (C, H, W) with H, W >= {MIN_IMAGE_SIZE}",
    "resnet50": f"images (C, H, W) with H, W >= {MIN_IMAGE_SIZE}",
    "deepcnn": f"images (C, H, W) with H, W >= {MIN_IMAGE_SIZE}",
    "deepcnn-res": f"images (C, H, W) with H, W >= {MIN_IMAGE_SIZE}",
}


def build(
    name: str,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    width: int | float | None = None,
    depth: int | None = None,
    batch_norm: bool = False,
    activation: str = "relu",
    base_width: int | None = None,
) -> nn.Module:
    """Build model ``name`` for samples of ``input_shape`` and ``num_classes`` output logits.

    - ``mlp``: flatten, ``depth`` hidden layers (default 2) of ``width`` units (default 256), linear head.
    - ``cnn``: ``depth`` blocks (default 2) of conv3x3 -> [BN] -> act -> maxpool2 with ``width * 2**i``
      channels (default width 32), average-pooled to at most 4x4, flattened, linear head.
    - ``cnn1d``: the same with ``(1, 7)`` kernels over series viewed as ``(C, 1, L)`` (default depth 3),
      then global average pooling and a linear head.
    - ``lenet``: LeNet as BioTorch's benchmark defines it (Sanfiz & Akrout 2021, ``le_net_mnist`` in their
      release of 2021-09-01): inputs resized to 32x32 (bilinear, as their data pipeline does), conv5x5 6 ->
      act -> maxpool2, conv5x5 16 -> act -> maxpool2, conv5x5 120 -> act, fc 84 -> act, linear head;
      weights Xavier-uniform and biases zero, their layers' default. Takes no width or depth.
    - ``resnet20``: CIFAR ResNet (He et al. 2016) with option-A (parameter-free) shortcuts,
      ``depth = 6n + 2`` (default 20), float ``width`` multiplier of 16/32/64 channels (default 1).
    - ``resnet18`` / ``resnet50``: torchvision's; ``width`` is resnet50's ``width_per_group`` (default 64;
      resnet18 takes none). Inputs under 64x64 get a conv3x3 stride-1 stem, no maxpool; C != 3 a new conv1.
      ``base_width`` (resnet18/resnet50 only) is the stem's channels, torchvision's 64 by default; the four
      stages get ``base_width * (1, 2, 4, 8)`` planes (a narrow ResNet for small budgets).

    - ``deepcnn`` / ``deepcnn-res``: :class:`DeepCNN`, plain or residual, ``depth = 3n + 2`` weight layers
      (default 8) and stage widths ``width``, 2·width, 4·width (default 16); for depth sweeps.

    ``batch_norm`` adds BatchNorm before each hidden activation of mlp/cnn/cnn1d/deepcnn(-res) (whose
    layers then drop their bias); the ResNets always have BatchNorm and ignore the flag. ``activation`` is
    one of relu, tanh, sigmoid; the ResNets accept relu only. Raises ValueError for unknown names and
    impossible combinations.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; accepted: {', '.join(MODELS)}")
    shape = tuple(int(s) for s in input_shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"input_shape must be non-empty positive sizes; got {shape}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; accepted: {', '.join(ACTIVATIONS)}")
    if base_width is not None and name not in ("resnet18", "resnet50"):
        raise ValueError(f"base_width is for resnet18 and resnet50 only; got base_width for {name!r}")
    if name.startswith("resnet") and activation != "relu":
        raise ValueError(f"{name} uses ReLU only; got activation {activation!r}")

    if name == "mlp":
        return _mlp(shape, num_classes, _width(name, width), _depth(name, depth, 0), batch_norm, activation)
    if name == "cnn":
        c, h, w = _image(name, shape)
        d = _depth(name, depth, 1)
        _require(min(h, w) >= 2**d, name, f"H, W >= 2**depth = {2**d} for depth {d}", shape)
        return _cnn(c, (h, w), num_classes, _width(name, width), d, batch_norm, activation)
    if name == "cnn1d":
        _require(len(shape) == 2, name, _ACCEPTED_SHAPES[name], shape)
        d = _depth(name, depth, 1)
        _require(shape[1] >= 2**d, name, f"L >= 2**depth = {2**d} for depth {d}", shape)
        return _cnn1d(shape[0], num_classes, _width(name, width), d, batch_norm, activation)
    if name == "lenet":
        if width is not None or depth is not None:
            raise ValueError(f"lenet's sizes are fixed: it takes no width or depth; got {width=}, {depth=}")
        c, h, w = _image(name, shape)
        return _lenet(c, (h, w), num_classes, batch_norm, activation)
    if name.startswith("deepcnn"):
        depth = DEFAULT_DEPTH[name] if depth is None else depth
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 2 or (depth - 2) % 3:
            raise ValueError(f"{name} depth must be 3n + 2 weight layers (2, 5, 8, 11, ...); got {depth!r}")
        c = _image(name, shape)[0]
        return DeepCNN(c, num_classes, _width(name, width), (depth - 2) // 3, batch_norm, activation,
                       residual=name == "deepcnn-res")  # fmt: skip
    if name == "resnet20":
        return _resnet20(_image(name, shape)[0], num_classes, width, depth)
    return _torchvision_resnet(name, _image(name, shape), num_classes, width, depth, base_width)


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters in ``model`` (all of them, including any a rule adds)."""
    return sum(p.numel() for p in model.parameters())


class To2d(nn.Module):
    """View a series batch ``(N, C, L)`` as images ``(N, C, 1, L)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(2)


class ShortcutA(nn.Module):
    """He et al.'s option-A shortcut: subsample by ``stride``, zero-pad the channels to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.pad = out_channels - in_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))


class BasicBlock(nn.Module):
    """Two conv3x3-BN layers with ReLU and a parameter-free shortcut (identity or :class:`ShortcutA`)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        changes = stride != 1 or in_channels != out_channels
        self.shortcut = ShortcutA(in_channels, out_channels, stride) if changes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet (He et al. 2016, sec. 4.2): conv3x3, 3 stages of ``blocks`` basic blocks, avgpool, fc.

    Stages have ``channels`` (16, 32, 64 at width 1) and strides 1, 2, 2; shortcuts are option A (no
    parameters), so every weighted layer -- ``6 * blocks + 2`` of them -- is on the main path.
    """

    def __init__(self, in_channels: int, num_classes: int, blocks: int, channels: Sequence[int]):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels[0])
        self.relu = nn.ReLU()
        stages, c_in = [], channels[0]
        for i, c in enumerate(channels):
            stage = [BasicBlock(c_in if j == 0 else c, c, 2 if i and j == 0 else 1) for j in range(blocks)]
            stages.append(nn.Sequential(*stage))
            c_in = c
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class ConvUnit(nn.Module):
    """One conv3x3 -> [BN] -> activation; with ``residual``, ``act(BN(conv x) + shortcut(x))`` (option A)."""

    def __init__(self, c_in: int, c_out: int, stride: int, batch_norm: bool, activation: str, residual: bool):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=not batch_norm)
        self.bn = nn.BatchNorm2d(c_out) if batch_norm else nn.Identity()
        self.act = ACTIVATIONS[activation]()
        changes = stride != 1 or c_in != c_out
        self.shortcut = (ShortcutA(c_in, c_out, stride) if changes else nn.Identity()) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn(self.conv(x))
        return self.act(out if self.shortcut is None else out + self.shortcut(x))


class DeepCNN(nn.Module):
    """A convolutional network whose depth is one knob, plain or residual (for depth sweeps).

    ``conv0`` (conv3x3, ``width`` channels) -> [BN] -> act -> maxpool2, then 3 stages of ``n`` conv units
    with ``width``, 2·width, 4·width channels (the first unit of stages 2 and 3 has stride 2), global average
    pooling and a linear ``head``: ``3n + 2`` weight layers. With ``residual`` each unit adds its input
    through a parameter-free shortcut (:class:`ShortcutA`), so every weight layer is on the main path, as in
    the plain network. Convolutions are He-initialized (Kaiming-normal, fan-in, ReLU gain) so that the plain
    network without batch norm keeps its signal's size with depth.
    """

    def __init__(
        self, in_channels: int, num_classes: int, width: int, n: int, batch_norm: bool, activation: str,
        residual: bool,
    ):  # fmt: skip
        super().__init__()
        self.conv0 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=not batch_norm)
        self.bn0 = nn.BatchNorm2d(width) if batch_norm else nn.Identity()
        self.act0 = ACTIVATIONS[activation]()
        self.pool0 = nn.MaxPool2d(2)
        c_in = width
        for i in range(3):
            c = width * 2**i
            units = [ConvUnit(c_in if j == 0 else c, c, 2 if i and j == 0 else 1, batch_norm, activation,
                              residual) for j in range(n)]  # fmt: skip
            self.add_module(f"stage{i + 1}", nn.Sequential(*units))
            c_in = c if n else c_in
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool0(self.act0(self.bn0(self.conv0(x))))
        x = self.stage3(self.stage2(self.stage1(x)))
        return self.head(torch.flatten(self.avgpool(x), 1))


def _require(ok: bool, name: str, accepted: str, shape: tuple[int, ...]) -> None:
    if not ok:
        raise ValueError(f"{name} cannot take input_shape {shape}; it needs {accepted}")


def _image(name: str, shape: tuple[int, ...]) -> tuple[int, int, int]:
    _require(len(shape) == 3 and min(shape[1:]) >= MIN_IMAGE_SIZE, name, _ACCEPTED_SHAPES[name], shape)
    return shape[0], shape[1], shape[2]


def _width(name: str, width: int | float | None) -> int:
    width = DEFAULT_WIDTH[name] if width is None else width
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"{name} width must be a positive integer; got {width!r}")
    return width


def _depth(name: str, depth: int | None, minimum: int) -> int:
    depth = DEFAULT_DEPTH[name] if depth is None else depth
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < minimum:
        raise ValueError(f"{name} depth must be an integer >= {minimum}; got {depth!r}")
    return depth


def _hidden(layer: nn.Module, channels: int, norm: type[nn.Module] | None, activation: str, i: int):
    """Named parts of hidden layer ``i``: the weighted layer, optional BatchNorm, the activation."""
    parts = [(f"{'fc' if isinstance(layer, nn.Linear) else 'conv'}{i}", layer)]
    if norm is not None:
        parts.append((f"bn{i}", norm(channels)))
    return [*parts, (f"act{i}", ACTIVATIONS[activation]())]


def _mlp(shape, num_classes, width, depth, batch_norm, activation) -> nn.Sequential:
    parts, n_in = [("flatten", nn.Flatten())], math.prod(shape)
    norm = nn.BatchNorm1d if batch_norm else None
    for i in range(1, depth + 1):
        parts += _hidden(nn.Linear(n_in, width, bias=not batch_norm), width, norm, activation, i)
        n_in = width
    parts.append(("head", nn.Linear(n_in, num_classes)))
    return nn.Sequential(OrderedDict(parts))


def _cnn(in_channels, size, num_classes, width, depth, batch_norm, activation) -> nn.Sequential:
    parts, c_in, (h, w) = [], in_channels, size
    norm = nn.BatchNorm2d if batch_norm else None
    for i in range(1, depth + 1):
        c = width * 2 ** (i - 1)
        parts += _hidden(nn.Conv2d(c_in, c, 3, padding=1, bias=not batch_norm), c, norm, activation, i)
        parts.append((f"pool{i}", nn.MaxPool2d(2)))
        c_in, h, w = c, h // 2, w // 2
    h, w = min(h, 4), min(w, 4)
    parts += [("avgpool", nn.AdaptiveAvgPool2d((h, w))), ("flatten", nn.Flatten())]
    parts.append(("head", nn.Linear(c_in * h * w, num_classes)))
    return nn.Sequential(OrderedDict(parts))


def _lenet(in_channels, size, num_classes, batch_norm, activation) -> nn.Sequential:
    parts = (
        []
        if size == (LENET_SIZE, LENET_SIZE)
        else [("resize", nn.Upsample(size=LENET_SIZE, mode="bilinear"))]
    )
    norm = nn.BatchNorm2d if batch_norm else None
    for i, (c_in, c) in enumerate([(in_channels, 6), (6, 16), (16, 120)], start=1):
        parts += _hidden(nn.Conv2d(c_in, c, 5, bias=not batch_norm), c, norm, activation, i)
        if i < 3:
            parts.append((f"pool{i}", nn.MaxPool2d(2)))
    parts.append(("flatten", nn.Flatten()))
    parts += _hidden(nn.Linear(120, 84), 84, None, activation, 4)
    parts.append(("head", nn.Linear(84, num_classes)))
    model = nn.Sequential(OrderedDict(parts))
    for layer in model.modules():  # BioTorch's layers' default initialisation
        if isinstance(layer, nn.Linear | nn.Conv2d):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return model


def _cnn1d(in_channels, num_classes, width, depth, batch_norm, activation) -> nn.Sequential:
    parts, c_in = [("to2d", To2d())], in_channels
    norm = nn.BatchNorm2d if batch_norm else None
    k = SERIES_KERNEL
    for i in range(1, depth + 1):
        c = width * 2 ** (i - 1)
        conv = nn.Conv2d(c_in, c, (1, k), padding=(0, k // 2), bias=not batch_norm)
        parts += [*_hidden(conv, c, norm, activation, i), (f"pool{i}", nn.MaxPool2d((1, 2)))]
        c_in = c
    parts += [("avgpool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten())]
    parts.append(("head", nn.Linear(c_in, num_classes)))
    return nn.Sequential(OrderedDict(parts))


def _resnet20(in_channels, num_classes, width, depth) -> CifarResNet:
    depth = DEFAULT_DEPTH["resnet20"] if depth is None else depth
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"resnet20 depth must be 6n + 2 (8, 14, 20, 32, 44, 56, 110, ...); got {depth!r}")
    width = 1.0 if width is None else width
    if isinstance(width, bool) or not isinstance(width, int | float) or round(16 * width) < 1:
        raise ValueError(f"resnet20 width is a channel multiplier >= 1/32 (16 * width); got {width!r}")
    return CifarResNet(in_channels, num_classes, (depth - 2) // 6, [round(c * width) for c in (16, 32, 64)])


class _NarrowResNet(torchvision.models.ResNet):
    """torchvision's ResNet with ``base`` stem channels instead of 64, every stage's planes scaled alike."""

    def __init__(self, block: type[nn.Module], layers: list[int], base: int, **kwargs) -> None:
        self.base = base
        super().__init__(block, layers, **kwargs)
        self.conv1 = nn.Conv2d(3, base, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.fc = nn.Linear(8 * base * block.expansion, self.fc.out_features)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False) -> nn.Sequential:
        if planes == 64:  # the first stage: it takes the stem's output
            self.inplanes = self.base
        return super()._make_layer(block, planes * self.base // 64, blocks, stride, dilate)


def _torchvision_resnet(name, shape, num_classes, width, depth, base_width=None) -> nn.Module:
    """torchvision's resnet18/resnet50; below 64x64 the stem is conv3x3 stride 1 without maxpool."""
    if depth not in (None, int(name[6:])):
        raise ValueError(
            f"{name} has a fixed depth of {name[6:]}; got depth {depth!r} (use resnet20 for 6n+2)"
        )
    kwargs = {}
    if width is not None:
        if name == "resnet18":
            raise ValueError(
                f"resnet18 does not support width (got {width!r}); use base_width, resnet50 or resnet20"
            )
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(
                f"resnet50 width is torchvision's width_per_group, a positive integer; got {width!r}"
            )
        kwargs["width_per_group"] = width
    base = 64
    if base_width is not None:
        if isinstance(base_width, bool) or not isinstance(base_width, int) or base_width < 1:
            raise ValueError(
                f"{name} base_width must be a positive integer (64: torchvision's); got {base_width!r}"
            )
        base = base_width
    if base == 64:
        model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes, **kwargs)
    else:
        block, layers = {
            "resnet18": (torchvision.models.resnet.BasicBlock, [2, 2, 2, 2]),
            "resnet50": (torchvision.models.resnet.Bottleneck, [3, 4, 6, 3]),
        }[name]
        model = _NarrowResNet(block, layers, base, num_classes=num_classes, **kwargs)
    c, h, w = shape
    if min(h, w) < SMALL_IMAGE_SIZE:
        model.conv1 = nn.Conv2d(c, base, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    elif c != 3:
        model.conv1 = nn.Conv2d(c, base, 7, 2, 3, bias=False)
    else:
        return model
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model
