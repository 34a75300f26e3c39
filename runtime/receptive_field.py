"""How far one denoising step looks: the halo a chunk needs to reproduce the whole-signal result.

``runtime`` never imports the model code, so the network's geometry is restated here from the
checkpoint params carried in ``model.json`` (lmnt's architecture, DESIGN.md "Facts about the
model"): a residual stack of kernel-3 dilated convolutions with dilation 2^(i mod cycle), and a
spectrogram upsampler of two transposed convolutions (kernel 32, stride 16, padding 8 along
time). Everything else in the network is pointwise in time.

One output sample n of a step depends on

* input audio samples n − R … n + R, with R = Σ_i 2^(i mod cycle) (3069 for the base model), and
* the upsampled conditioner at those samples, i.e. mel frames covering a few hundred more samples.

A chunk whose edges are at least this far from the samples it keeps computes them exactly as the
whole signal would: the zero padding at the chunk edge never reaches them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .errors import VocoderError

#: (kernel, stride, padding) along time of each transposed convolution of the upsampler.
UPSAMPLER_TIME_STAGES: tuple[tuple[int, int, int], ...] = ((32, 16, 8), (32, 16, 8))
DILATED_KERNEL = 3


def residual_reach(residual_layers: int, dilation_cycle_length: int, kernel_size: int = DILATED_KERNEL) -> int:
    """Samples seen on each side of an output sample through the dilated convolutions."""
    half = (kernel_size - 1) // 2
    return sum(half * 2 ** (i % dilation_cycle_length) for i in range(residual_layers))


def _transposed_input_span(j: int, kernel: int, stride: int, padding: int) -> tuple[int, int]:
    """Input positions i that output position j of a transposed convolution reads.

    out[j] = Σ_i in[i] · w[j + padding − stride·i] for 0 ≤ j + padding − stride·i < kernel.
    """
    first = -((-(j + padding - kernel + 1)) // stride)  # ceil
    last = (j + padding) // stride
    return first, last


def upsampler_frame_span(sample: int) -> tuple[int, int]:
    """First and last mel frame the upsampled conditioner at ``sample`` depends on."""
    first = last = sample
    for kernel, stride, padding in reversed(UPSAMPLER_TIME_STAGES):
        first = _transposed_input_span(first, kernel, stride, padding)[0]
        last = _transposed_input_span(last, kernel, stride, padding)[1]
    return first, last


def upsampler_hop() -> int:
    hop = 1
    for _, stride, _ in UPSAMPLER_TIME_STAGES:
        hop *= stride
    return hop


@dataclass(frozen=True)
class Halo:
    """Context a window needs before and after the span it keeps, in units (frames or samples)."""

    before: int
    after: int

    @property
    def total(self) -> int:
        return self.before + self.after


@dataclass(frozen=True)
class StepReach:
    """One step's receptive field for a given architecture."""

    audio: int  #: samples on each side through the residual stack
    conditional: bool
    hop: int

    @classmethod
    def from_params(cls, params: Mapping[str, Any], conditional: bool, hop: int) -> "StepReach":
        try:
            reach = residual_reach(int(params["residual_layers"]), int(params["dilation_cycle_length"]))
        except (KeyError, TypeError, ValueError):
            raise VocoderError(
                "model.json params lack residual_layers/dilation_cycle_length: the receptive field needed "
                "for exact chunking is unknown (re-export the bundle)"
            ) from None
        return cls(audio=reach, conditional=conditional, hop=hop)

    def halo(self) -> Halo:
        """Halo in frames (conditional: chunks are whole frames) or samples (unconditional)."""
        if not self.conditional:
            return Halo(self.audio, self.audio)
        if self.hop != upsampler_hop():
            raise VocoderError(f"hop_samples={self.hop} does not match the upsampler's stride product {upsampler_hop()}")
        # Keep frames [a, b): the first kept sample a·hop reads audio from a·hop − R and the
        # conditioner there, which reads frames from upsampler_frame_span(a·hop − R)[0]; likewise
        # on the right. The span is translation-invariant in whole frames, so any a works.
        a = 1000
        first_frame = min(upsampler_frame_span(a * self.hop - self.audio)[0], a - -(-self.audio // self.hop))
        last_frame = max(upsampler_frame_span(a * self.hop - 1 + self.audio)[1], a - 1 + -(-self.audio // self.hop))
        return Halo(before=a - first_frame, after=last_frame - (a - 1))
