"""The DiffWave network (Kong et al., 2020), with lmnt's parameter names.

Parameter names and shapes match lmnt-com/diffwave exactly, so its published
checkpoints load unchanged. Two deliberate differences from lmnt's module:

* ``diffusion_step`` may be a float tensor of shape [B] with distinct values (lmnt's
  interpolation only broadcasts for one shared step);
* the step-independent parts (step embedding, spectrogram upsampling) are separate
  methods, so a sampler can compute them once per utterance instead of once per step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .config import DiffWaveConfig

if TYPE_CHECKING:
    from .params import AttrDict

EMBEDDING_DIM = 128  #: 64 sines + 64 cosines
EMBEDDING_HIDDEN = 512


def _conv1d(*args, **kwargs) -> nn.Conv1d:
    """A Conv1d with Kaiming-normal weights, the initialisation lmnt trains from."""
    layer = nn.Conv1d(*args, **kwargs)
    nn.init.kaiming_normal_(layer.weight)
    return layer


def step_embedding_table(max_steps: int) -> torch.Tensor:
    """[max_steps, 128] table: sin and cos of t·10^(4·d/63), d = 0…63 (DiffWave paper, eq. 8 variant)."""
    steps = torch.arange(max_steps, dtype=torch.float32).unsqueeze(1)
    dims = torch.arange(64, dtype=torch.float32).unsqueeze(0)
    table = steps * 10.0 ** (dims * 4.0 / 63.0)
    return torch.cat([torch.sin(table), torch.cos(table)], dim=1)


class DiffusionEmbedding(nn.Module):
    def __init__(self, max_steps: int):
        super().__init__()
        self.register_buffer("embedding", step_embedding_table(max_steps), persistent=False)
        self.projection1 = nn.Linear(EMBEDDING_DIM, EMBEDDING_HIDDEN)
        self.projection2 = nn.Linear(EMBEDDING_HIDDEN, EMBEDDING_HIDDEN)

    def forward(self, diffusion_step: torch.Tensor) -> torch.Tensor:
        """[S] integer or float steps -> [S, 512]."""
        if diffusion_step.dtype in (torch.int32, torch.int64):
            x = self.embedding[diffusion_step]
        else:
            x = self.interpolate(diffusion_step)
        x = F.silu(self.projection1(x))
        return F.silu(self.projection2(x))

    def interpolate(self, t: torch.Tensor) -> torch.Tensor:
        """Linear interpolation between the table rows floor(t) and ceil(t), per element of t."""
        t = t.float()
        low = torch.floor(t)
        low_row = self.embedding[low.long()]
        high_row = self.embedding[torch.ceil(t).long()]
        return low_row + (high_row - low_row) * (t - low).unsqueeze(-1)


class SpectrogramUpsampler(nn.Module):
    """Two transposed 2-D convolutions, each stretching time by 16: frames × 256 samples."""

    def __init__(self, n_mels: int):
        super().__init__()
        self.conv1 = nn.ConvTranspose2d(1, 1, [3, 32], stride=[1, 16], padding=[1, 8])
        self.conv2 = nn.ConvTranspose2d(1, 1, [3, 32], stride=[1, 16], padding=[1, 8])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.unsqueeze(x, 1)
        x = F.leaky_relu(self.conv1(x), 0.4)
        x = F.leaky_relu(self.conv2(x), 0.4)
        return torch.squeeze(x, 1)


class ResidualBlock(nn.Module):
    def __init__(self, n_mels: int, residual_channels: int, dilation: int, unconditional: bool = False):
        super().__init__()
        c = residual_channels
        self.dilated_conv = _conv1d(c, 2 * c, 3, padding=dilation, dilation=dilation)
        self.diffusion_projection = nn.Linear(EMBEDDING_HIDDEN, c)
        self.conditioner_projection = None if unconditional else _conv1d(n_mels, 2 * c, 1)
        self.output_projection = _conv1d(c, 2 * c, 1)

    def forward(
        self, x: torch.Tensor, step_embedding: torch.Tensor, conditioner: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        y = x + self.diffusion_projection(step_embedding).unsqueeze(-1)
        y = self.dilated_conv(y)
        if self.conditioner_projection is not None:
            y = y + self.conditioner_projection(conditioner)
        gate, filt = torch.chunk(y, 2, dim=1)
        y = self.output_projection(torch.sigmoid(gate) * torch.tanh(filt))
        residual, skip = torch.chunk(y, 2, dim=1)
        return (x + residual) / math.sqrt(2.0), skip


class DiffWave(nn.Module):
    """ε-prediction network: (x_t [B, L], t, mel [B, n_mels, L/hop]) -> ε̂ [B, 1, L]."""

    def __init__(self, config: Optional[DiffWaveConfig | Mapping[str, Any]] = None):
        """``config``: a :class:`DiffWaveConfig`, or lmnt's ``params`` (any mapping of its flat key
        names, like ``diffwave.params.params``), so ``DiffWave(params)`` works as in lmnt's scripts."""
        super().__init__()
        if config is None:
            config = DiffWaveConfig()
        elif isinstance(config, Mapping):
            config = DiffWaveConfig.from_params(dict(config), strict=False)  # lmnt's scripts add keys of their own
        elif not isinstance(config, DiffWaveConfig):
            raise TypeError(f"DiffWave takes a DiffWaveConfig or lmnt's params, got {type(config).__name__}")
        config.validate()
        self.config = config
        m = config.model
        n_mels = config.features.n_mels
        self.input_projection = _conv1d(1, m.residual_channels, 1)
        self.diffusion_embedding = DiffusionEmbedding(len(config.diffusion.noise_schedule))
        self.spectrogram_upsampler = None if m.unconditional else SpectrogramUpsampler(n_mels)
        self.residual_layers = nn.ModuleList(
            ResidualBlock(n_mels, m.residual_channels, 2 ** (i % m.dilation_cycle_length), m.unconditional)
            for i in range(m.residual_layers)
        )
        self.skip_projection = _conv1d(m.residual_channels, m.residual_channels, 1)
        self.output_projection = _conv1d(m.residual_channels, 1, 1)
        # lmnt starts from a zero output layer: the untrained model predicts ε̂ = 0.
        nn.init.zeros_(self.output_projection.weight)

    @property
    def params(self) -> "AttrDict":
        """lmnt's ``model.params``: this network's configuration in lmnt's flat key names."""
        from .params import AttrDict

        return AttrDict(self.config.to_params())

    @property
    def unconditional(self) -> bool:
        return self.spectrogram_upsampler is None

    # -- step-independent parts ---------------------------------------------------------
    def embed_steps(self, diffusion_step: torch.Tensor | int | float) -> torch.Tensor:
        """Step embedding [S, 512] for integer or continuous steps of shape [], [1] or [B]."""
        if not torch.is_tensor(diffusion_step):
            diffusion_step = torch.tensor([diffusion_step])
        diffusion_step = diffusion_step.to(self.input_projection.weight.device).reshape(-1)
        return self.diffusion_embedding(diffusion_step)

    def upsample(self, spectrogram: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """[B, n_mels, F] -> [B, n_mels, F·256], or None for an unconditional model."""
        if self.spectrogram_upsampler is None:
            return None
        if spectrogram is None:
            raise ValueError("this conditional model needs a spectrogram")
        return self.spectrogram_upsampler(spectrogram)

    # -- the network --------------------------------------------------------------------
    def denoise(
        self, audio: torch.Tensor, step_embedding: torch.Tensor, conditioner: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """The x-dependent part of one evaluation, given precomputed step embedding and conditioner."""
        x = F.relu(self.input_projection(audio.unsqueeze(1)))
        skip = None
        for layer in self.residual_layers:
            x, skip_connection = layer(x, step_embedding, conditioner)
            skip = skip_connection if skip is None else skip + skip_connection
        x = skip / math.sqrt(len(self.residual_layers))
        x = F.relu(self.skip_projection(x))
        return self.output_projection(x)

    def forward(
        self,
        audio: torch.Tensor,
        diffusion_step: torch.Tensor,
        spectrogram: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        return self.denoise(audio, self.embed_steps(diffusion_step), self.upsample(spectrogram))

    # -- checkpoints ----------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str | torch.device = "cpu") -> "DiffWave":
        """Load a model directory (its ``weights.pt``) or a ``.pt`` file, ours or lmnt's."""
        from .checkpoint import load_model

        return load_model(path, map_location=map_location)
