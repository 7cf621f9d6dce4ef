"""``kitsrt train`` as one library call: plan the seed's networks, prepare every case once, train
each network in turn (needs torch)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kitsrt.errors import InputError
from kitsrt.training.data import prepare_all, prepare_styled, styled_cases
from kitsrt.training.trainer import preset_config, train, training_plan


def train_recipe(data: Path, output: Path, preset: str | None, stage: str | None, exclude: set[str],
                 cache: Path | None, resume: bool, on_prepared: Callable[[str], None] | None = None,
                 on_step: Callable[[str, int, float], None] | None = None,
                 on_trained: Callable[[str, dict, Path, int], None] | None = None, styles: int = 0,
                 procedural: int = 0, stop_at: int | None = None, **config) -> dict[str, dict]:
    """Train the networks of ``preset``/``stage`` on the KiTS-layout folder ``data`` (less ``exclude``).

    ``config`` holds TrainConfig fields (steps, batch_size, crop (z, y, x voxels), learning_rate,
    seed, threads). Each network's checkpoint goes to ``output`` (seed 004: ``output/<role>``).
    Callbacks: ``on_prepared(case)``, ``on_step(role, step, loss)``, ``on_trained(role, summary,
    folder, volumes)``. ``styles`` > 0 or ``procedural`` > 0 trains on domain-randomised phantoms
    instead (``styles`` random styles per label map, plus ``procedural`` procedural label maps; see
    ``kitsrt.training.data.styled_cases``); a fine-only run then prepares the cases last-first, so a
    coarse and a fine run started together on one cache share the work. Returns each role's
    training summary. ``stop_at`` stops each network at that step of its schedule (see ``train``)."""
    spec, roles = training_plan(preset, stage)
    configs = {role: preset_config(role, preset, **config) for role in roles}
    for role, network in configs.items():
        if any(c % network.model.divisibility for c in network.crop):
            raise InputError(f"--crop {','.join(map(str, network.crop))}: each size must be a multiple of "
                             f"{network.model.divisibility} for the {role} network")
    if styles > 0 or procedural > 0:
        volumes = prepare_styled(styled_cases(data, exclude, styles, procedural), spec, cache, set(roles),
                                 progress=on_prepared, last_first=roles == ["fine"])
    else:
        volumes = prepare_all(data, spec, exclude, cache, progress=on_prepared)
    summaries = {}
    for role, network in configs.items():
        folder = output / role if preset == "seed004" else output
        step = (lambda s, loss, r=role: on_step(r, s, loss)) if on_step else None
        summaries[role] = train(volumes[role], network, folder, resume, progress=step, stop_at=stop_at)
        if on_trained is not None:
            on_trained(role, summaries[role], folder, len(volumes[role]))
    return summaries
