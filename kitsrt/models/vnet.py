"""3D V-Net of seed 004 (Zavala-Romero et al., "Nested 3D neural networks for kidney and tumor
segmentation"; after Milletari et al.): residual stages of 3x3x3 convolutions with ReLU, stride-2
2x2x2 convolutions down, 2x2x2 transposed convolutions up, skip concatenation; batch normalisation in
the decoding phase only; one output channel whose sigmoid is the structure's probability.

Shapes: input (N, 1, D, H, W), output logits (N, num_classes, D, H, W); D, H and W must be multiples
of ``2 ** len(convs)`` (8 for the default three levels: 168 = 8 x 21). The same architecture is
trained twice: once for kidney, once for tumor on the kidney-masked volume.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class VNetConfig:
    """``convs[i]`` 3x3x3 convolutions in encoder level i (the decoder mirrors them) and
    ``bottom_convs`` at the bottom; level i has ``base_channels * 2**i`` channels."""

    architecture: str = "vnet"
    in_channels: int = 1
    num_classes: int = 1
    base_channels: int = 8
    convs: tuple[int, ...] = (1, 2, 2)
    bottom_convs: int = 2

    @property
    def divisibility(self) -> int:
        return 2 ** len(self.convs)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_dict(cls, data: dict) -> VNetConfig:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown V-Net config keys: {sorted(unknown)}")
        if data.get("architecture", "vnet") != "vnet":
            raise ValueError(f"not a V-Net config: architecture {data['architecture']!r}")
        values = dict(data)
        if "convs" in values:
            values["convs"] = tuple(values["convs"])
        return cls(**values)


def _conv(cin: int, cout: int, batch_norm: bool) -> nn.Sequential:
    layers = [nn.Conv3d(cin, cout, 3, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm3d(cout))
    return nn.Sequential(*layers, nn.ReLU(inplace=True))


class ResidualStage(nn.Module):
    """``count`` 3x3x3 convolutions (the first maps ``cin`` to ``cout``) plus a residual path
    (1x1x1 projection when the channel count changes)."""

    def __init__(self, cin: int, cout: int, count: int, batch_norm: bool):
        super().__init__()
        self.convs = nn.Sequential(*(_conv(cin if i == 0 else cout, cout, batch_norm) for i in range(count)))
        self.skip = nn.Identity() if cin == cout else nn.Conv3d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x) + self.skip(x)


class VNet(nn.Module):
    def __init__(self, config: VNetConfig):
        super().__init__()
        self.config = config
        c = config.base_channels
        self.encoders, self.downs = nn.ModuleList(), nn.ModuleList()
        cin = config.in_channels
        for i, count in enumerate(config.convs):
            self.encoders.append(ResidualStage(cin, c * 2**i, count, batch_norm=False))
            self.downs.append(nn.Sequential(nn.Conv3d(c * 2**i, c * 2 ** (i + 1), 2, stride=2), nn.ReLU(inplace=True)))
            cin = c * 2 ** (i + 1)
        self.bottom = ResidualStage(c * 2 ** len(config.convs), c * 2 ** len(config.convs), config.bottom_convs,
                                    batch_norm=False)
        self.ups, self.decoders = nn.ModuleList(), nn.ModuleList()
        for i, count in reversed(list(enumerate(config.convs))):
            self.ups.append(nn.Sequential(nn.ConvTranspose3d(c * 2 ** (i + 1), c * 2**i, 2, stride=2, bias=False),
                                          nn.BatchNorm3d(c * 2**i), nn.ReLU(inplace=True)))
            self.decoders.append(ResidualStage(c * 2 ** (i + 1), c * 2**i, count, batch_norm=True))
        self.head = nn.Conv3d(c, config.num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.bottom(x)
        for up, decoder in zip(self.ups, self.decoders):
            x = decoder(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


# Sized for the bundled seed 004 demo, trained on 2 CPU cores (the paper's network is wider).
PRESETS = {
    "seed004": VNetConfig(base_channels=6, convs=(1, 2, 2), bottom_convs=2),
}


def build_vnet(config: VNetConfig) -> VNet:
    return VNet(config)
