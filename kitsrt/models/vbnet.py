"""VB-Net (Mu et al., KiTS19): a V-Net whose down and up blocks are bottleneck residual units.

Shapes: input (N, 1, D, H, W), output logits (N, num_classes, D, H, W); D, H and W must be
multiples of ``2 ** len(down_blocks)``. There is no data-dependent control flow, so the graph
exports to ONNX with dynamic spatial axes and compiles in TensorRT.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import torch
from torch import nn

ARCHITECTURES = ("vbnet",)


def _check_count(key: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{key} {value!r}: expected a whole number from {low} to {high}")


@dataclass(frozen=True)
class VBNetConfig:
    """Width and depth of a VB-Net. ``down_blocks[i]`` bottleneck units follow the i-th down-sampling;
    the up path mirrors them. ``bottleneck_ratio`` is the channel reduction inside a unit."""

    architecture: str = "vbnet"
    in_channels: int = 1
    num_classes: int = 3
    base_channels: int = 16
    down_blocks: tuple[int, ...] = (1, 2, 2)
    bottleneck_ratio: int = 4

    @property
    def divisibility(self) -> int:
        return 2 ** len(self.down_blocks)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_dict(cls, data: dict) -> VBNetConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown VB-Net config keys: {sorted(unknown)}")
        if data.get("architecture", "vbnet") not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {data['architecture']!r}; known: {', '.join(ARCHITECTURES)}")
        values = dict(data)
        if "down_blocks" in values:
            blocks = values["down_blocks"]
            if not isinstance(blocks, (list, tuple)) or not 1 <= len(blocks) <= 6:
                raise ValueError(f"down_blocks {blocks!r}: expected a list of 1 to 6 block counts")
            values["down_blocks"] = tuple(blocks)
        for key in ("in_channels", "num_classes", "base_channels", "bottleneck_ratio"):
            _check_count(key, values.get(key, 1), 1, 4096)
        for count in values.get("down_blocks", ()):
            _check_count("down_blocks[]", count, 0, 64)
        return cls(**values)


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    padding = kernel // 2 if stride == 1 else 0
    return nn.Sequential(nn.Conv3d(cin, cout, kernel, stride, padding, bias=False), nn.BatchNorm3d(cout),
                         nn.ReLU(inplace=True))


class Bottleneck(nn.Module):
    """x + (1x1x1 reduce -> 3x3x3 -> 1x1x1 expand), then ReLU. Channels unchanged."""

    def __init__(self, channels: int, ratio: int):
        super().__init__()
        mid = max(channels // ratio, 4)
        self.body = nn.Sequential(
            _conv_bn_relu(channels, mid, 1),
            _conv_bn_relu(mid, mid, 3),
            nn.Conv3d(mid, channels, 1, bias=False),
            nn.BatchNorm3d(channels),
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.body(x))


class Down(nn.Module):
    """2x2x2 stride-2 convolution doubling the channels, then bottleneck units."""

    def __init__(self, cin: int, units: int, ratio: int):
        super().__init__()
        self.down = _conv_bn_relu(cin, cin * 2, 2, stride=2)
        self.units = nn.Sequential(*(Bottleneck(cin * 2, ratio) for _ in range(units)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.units(self.down(x))


class Up(nn.Module):
    """2x2x2 transposed convolution halving the channels, concatenation with the skip, 1x1x1 fuse,
    then bottleneck units."""

    def __init__(self, cin: int, units: int, ratio: int):
        super().__init__()
        cout = cin // 2
        self.up = nn.Sequential(nn.ConvTranspose3d(cin, cout, 2, stride=2, bias=False), nn.BatchNorm3d(cout),
                                nn.ReLU(inplace=True))
        self.fuse = _conv_bn_relu(cout * 2, cout, 1)
        self.units = nn.Sequential(*(Bottleneck(cout, ratio) for _ in range(units)))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.units(self.fuse(torch.cat([self.up(x), skip], dim=1)))


class VBNet(nn.Module):
    def __init__(self, config: VBNetConfig):
        super().__init__()
        self.config = config
        c, r = config.base_channels, config.bottleneck_ratio
        self.stem = _conv_bn_relu(config.in_channels, c, 3)
        self.downs = nn.ModuleList()
        for i, units in enumerate(config.down_blocks):
            self.downs.append(Down(c * 2 ** i, units, r))
        self.ups = nn.ModuleList()
        for i, units in reversed(list(enumerate(config.down_blocks))):
            self.ups.append(Up(c * 2 ** (i + 1), units, r))
        self.head = nn.Conv3d(c, config.num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.head(x)


# Sized for the bundled demo, trained on 2 CPU cores; the paper's networks are wider.
PRESETS = {
    "coarse": VBNetConfig(base_channels=6, down_blocks=(1, 1, 2)),
    "fine": VBNetConfig(base_channels=8, down_blocks=(1, 1, 2)),
    "tiny": VBNetConfig(base_channels=4, down_blocks=(1, 1)),
    # demo v2 (issue 15): four levels for a receptive field that sees a kidney's surroundings.
    "coarse-v2": VBNetConfig(base_channels=6, down_blocks=(1, 1, 2, 2)),
    "fine-v2": VBNetConfig(base_channels=12, down_blocks=(1, 1, 2, 2)),
}


def build_model(config: VBNetConfig) -> VBNet:
    if config.architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {config.architecture!r}; known: {', '.join(ARCHITECTURES)}")
    return VBNet(config)
