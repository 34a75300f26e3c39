"""`fast_step_share`: part of each batch trained at the steps the fast schedule samples with."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from diffwave.config import DiffWaveConfig
from diffwave.distributed import DistContext
from diffwave.train import Learner, TrainOptions, fast_training_steps, train
from helpers import tiny_config
from runtime.schedule import cumulative_alphas

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_fast_steps_are_the_training_steps_with_the_nearest_noise_levels():
    """lmnt's six fast betas land nearest training steps 0, 1, 4, 10, 23 and 43 by noise level √ᾱ."""
    config = DiffWaveConfig()
    train_level = np.sqrt(cumulative_alphas(config.diffusion.noise_schedule))
    infer_level = np.sqrt(cumulative_alphas(config.diffusion.inference_noise_schedule))
    nearest = tuple(sorted({int(np.abs(train_level - level).argmin()) for level in infer_level}))
    assert fast_training_steps(config) == nearest == (0, 1, 4, 10, 23, 43)


def _learner(tmp_path: Path, share: float) -> Learner:
    options = TrainOptions(model_dir=tmp_path, data_dirs=(), progress=False)
    return Learner(tiny_config(fast_step_share=share), options, DistContext(), torch.device("cpu"))


def test_a_share_of_the_rows_moves_and_the_rest_keep_their_step(tmp_path):
    uniform = torch.randint(0, 50, (4000,), generator=torch.Generator().manual_seed(0))
    fast = set(fast_training_steps(DiffWaveConfig()))

    everything = _learner(tmp_path, 1.0)._move_rows_to_fast_steps(uniform)
    assert set(everything.tolist()) == fast  # every row, and every one of the six steps used

    learner = _learner(tmp_path, 0.5)
    half = learner._move_rows_to_fast_steps(uniform)
    on_fast = np.isin(half.numpy(), list(fast))
    # Half the rows moved, and 6 in 50 of the others were on a fast step already: 0.5 + 0.5·0.12.
    assert 0.53 < on_fast.mean() < 0.59
    kept = half == uniform
    assert on_fast[~kept.numpy()].all()  # every changed row went to a fast step
    assert kept.float().mean() > 0.45  # the rows not chosen keep their uniform step

    # The draw is fixed by seed and step (a resumed run repeats it), and differs from step to step.
    assert torch.equal(learner._move_rows_to_fast_steps(uniform), half)
    learner.step = 1
    assert not torch.equal(learner._move_rows_to_fast_steps(uniform), half)


def test_config_key_defaults_off_round_trips_and_is_checked():
    assert DiffWaveConfig().train.fast_step_share == 0.0  # lmnt's uniform draw unless asked for
    again = DiffWaveConfig.from_params(DiffWaveConfig().override({"fast_step_share": 0.5}).to_params())
    assert again.train.fast_step_share == 0.5
    for bad in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match="fast_step_share"):
            DiffWaveConfig().override({"fast_step_share": bad})


def test_the_option_leaves_the_noise_draw_alone_and_reaches_training(tmp_path, preprocessed_dir):
    """Through train(): a share too small to move any row gives bit-identical weights to no share
    (so the noise and uniform steps are drawn exactly as without the option); share 1 changes them."""

    def first_steps(share: float) -> dict:
        options = TrainOptions(model_dir=tmp_path / f"s{share}", data_dirs=(Path(preprocessed_dir),), max_steps=2,
                               data_workers=0, progress=False)
        result = train(options, tiny_config(fast_step_share=share))
        assert all(np.isfinite(result.losses))
        return result.model.state_dict()

    plain, untouched, moved = first_steps(0.0), first_steps(1e-12), first_steps(1.0)
    assert all(torch.equal(plain[k], untouched[k]) for k in plain)
    assert any(not torch.equal(plain[k], moved[k]) for k in plain)
