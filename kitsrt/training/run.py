"""``kitsrt train`` as one library call: plan the seed's networks, prepare every case once, train
each network in turn (needs torch)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kitsrt.errors import InputError
from kitsrt.training.data import prepare_all
from kitsrt.training.trainer import preset_config, train, training_plan


def train_recipe(data: Path, output: Path, preset: str | None, stage: str | None, exclude: set[str],
                 cache: Path | None, resume: bool, on_prepared: Callable[[str], None] | None = None,
                 on_step: Callable[[str, int, float], None] | None = None,
                 on_trained: Callable[[str, dict, Path, int], None] | None = None, **config) -> dict[str, dict]:
    """Train the networks of ``preset``/``stage`` on the KiTS-layout folder ``data`` (less ``exclude``).

    ``config`` holds TrainConfig fields (steps, batch_size, crop (z, y, x voxels), learning_rate,
    seed, threads). Each network's checkpoint goes to ``output`` (seed 004: ``output/<role>``).
    Callbacks: ``on_prepared(case)``, ``on_step(role, step, loss)``, ``on_trained(role, summary,
    folder, volumes)``. Returns each role's training summary."""
    spec, roles = training_plan(preset, stage)
    configs = {role: preset_config(role, preset, **config) for role in roles}
    for role, network in configs.items():
        if any(c % network.model.divisibility for c in network.crop):
            raise InputError(f"--crop {','.join(map(str, network.crop))}: each size must be a multiple of "
                             f"{network.model.divisibility} for the {role} network")
    volumes = prepare_all(data, spec, exclude, cache, progress=on_prepared)
    summaries = {}
    for role, network in configs.items():
        folder = output / role if preset == "seed004" else output
        step = (lambda s, loss, r=role: on_step(r, s, loss)) if on_step else None
        summaries[role] = train(volumes[role], network, folder, resume, progress=step)
        if on_trained is not None:
            on_trained(role, summaries[role], folder, len(volumes[role]))
    return summaries
