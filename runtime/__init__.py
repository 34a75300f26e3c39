"""The serving layer: bundle metadata, schedule math and the vocoder (never imports diffwave/export)."""

from .errors import DeviceUnsupported, VocoderError
from .vocoder import Vocoder

__all__ = ["Vocoder", "VocoderError", "DeviceUnsupported"]
