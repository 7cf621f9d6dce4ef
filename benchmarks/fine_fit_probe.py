"""Does a fine (VOI) network fit its own training data? Kidney and tumor Dice of a training
checkpoint on the fine VOIs of a ``kitsrt train --cache`` folder (issue 15: demo v2's fine network
never predicts tumor). Needs the export extra (torch).

    python benchmarks/fine_fit_probe.py work/v2_fine/checkpoint.pt work/v2_cache [--files 6]

Each VOI runs whole (padded to a multiple of 16 with its lowest value), argmax labels; Dice is
pooled over the VOIs of the first ``--files`` cache files (sorted by name).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def fit_dice(checkpoint: Path, cache: Path, files: int | None) -> dict:
    import torch

    from kitsrt.models import build_model, config_from_dict

    config = json.loads((checkpoint.parent / "config.json").read_text())
    state = torch.load(checkpoint, weights_only=True)
    model = build_model(config_from_dict(config["model"]))
    model.load_state_dict(state["model"])
    model.eval()
    both, sizes = np.zeros(3), np.zeros(3)
    for path in sorted(cache.glob("*.npz"))[:files]:
        data = np.load(path)
        for key in (k for k in data.files if k.startswith("fine_image")):
            labels = data[key.replace("image", "labels")]
            image = torch.from_numpy(data[key][None, None])
            pad = [p for n in reversed(image.shape[2:]) for p in (0, (-n) % 16)]
            with torch.no_grad():
                logits = model(torch.nn.functional.pad(image, pad, value=float(image.min())))[0]
            predicted = logits.argmax(0).numpy()[tuple(slice(0, n) for n in labels.shape)]
            for c in (1, 2):
                both[c] += np.count_nonzero((predicted == c) & (labels == c))
                sizes[c] += np.count_nonzero(predicted == c) + np.count_nonzero(labels == c)
    dice = 2 * both / np.maximum(sizes, 1)
    return {"checkpoint": str(checkpoint), "step": int(state["step"]), "kidney_dice": round(float(dice[1]), 3),
            "tumor_dice": round(float(dice[2]), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("cache", type=Path)
    parser.add_argument("--files", type=int, default=None, help="only the first N cache files")
    args = parser.parse_args()
    print(json.dumps(fit_dice(args.checkpoint, args.cache, args.files)))


if __name__ == "__main__":
    main()
