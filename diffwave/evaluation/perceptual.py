"""Perceptual scores: PESQ wide-band against the recording, DNSMOS of the output alone.

Why these two: Griffin-Lim optimises magnitude consistency, so a mel-cycle distance alone
ranks it close to a neural vocoder that sounds far better. PESQ (ITU-T P.862.2, the
``pesq`` package) compares against the original and punishes phase artefacts and hiss;
DNSMOS (Microsoft's P.835 predictor, the ``speechmos`` package, whose ONNX models ship
inside the wheel, so it works offline) needs no reference at all.

Both are defined at 16 kHz: audio is resampled with ``soxr`` first. All three packages are
in the ``[eval]`` extra and imported on first use; a missing one raises
:class:`~diffwave.evaluation.metrics.MissingExtraError` with the install command.

``speechmos`` 0.0.1.1 imports ``librosa`` (for the P.808 model's mel features) and
``requests`` without declaring them, so the extra lists both.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .metrics import require

PERCEPTUAL_RATE = 16000
#: PESQ refuses shorter signals (pesq.BufferTooShortError: "at least 1/4 of a second").
PESQ_MIN_SECONDS = 0.25


def pesq_min_samples(sample_rate: int) -> int:
    """Fewest samples at ``sample_rate`` that still give PESQ a quarter of a second at 16 kHz."""
    return math.ceil(PESQ_MIN_SECONDS * sample_rate)


def resample(audio, sample_rate: int, target_rate: int = PERCEPTUAL_RATE) -> np.ndarray:
    """soxr high-quality resampling of mono float audio."""
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    if sample_rate == target_rate:
        return x
    soxr = require("soxr", "resampling to 16 kHz for PESQ/DNSMOS")
    return soxr.resample(x, sample_rate, target_rate, quality="HQ").astype(np.float32)


def pesq_wb(degraded, reference, sample_rate: int) -> float:
    """PESQ wide-band MOS-LQO (about 1.0 … 4.64) of ``degraded`` against ``reference``.

    Both are trimmed to their common length (a vocoder returns a few samples more than the
    recording). Returns NaN when PESQ finds no speech in the reference (e.g. silence): that is
    a property of the file, not a usage error, and the caller reports it as missing.
    """
    pesq = require("pesq", "PESQ")
    deg, ref = resample(degraded, sample_rate), resample(reference, sample_rate)
    n = min(len(deg), len(ref))
    if not np.any(ref[:n]):
        return math.nan  # an all-zero reference has no utterance (and pesq would divide by zero)
    try:
        return float(pesq.pesq(PERCEPTUAL_RATE, ref[:n].astype(np.float64), deg[:n].astype(np.float64), "wb"))
    except pesq.NoUtterancesError:
        return math.nan


@dataclass(frozen=True)
class DnsmosScore:
    """DNSMOS P.835 predictions on the 1…5 MOS scale, plus the P.808 overall predictor."""

    overall: float  #: OVRL: overall quality
    signal: float  #: SIG: speech distortion
    background: float  #: BAK: background noise (hiss shows here)
    p808: float  #: P.808 model's overall MOS


@lru_cache(maxsize=1)
def _dnsmos_model():
    """speechmos's DNSMOS with its packaged ONNX models, on ONNX Runtime's CPU provider.

    We build the sessions ourselves instead of calling ``dnsmos.run``: its sessions name no
    execution provider, which onnxruntime-gpu (our ``[gpu]`` extra) refuses, and its
    module-level singleton is not ours to share.
    """
    require("librosa", "DNSMOS (speechmos's P.808 features)")
    dnsmos = require("speechmos.dnsmos", "DNSMOS", package="speechmos")
    import os

    import onnxruntime as ort

    models = os.path.join(os.path.dirname(dnsmos.__file__), "dnsmos_models")

    class _CpuDNSMOS(dnsmos.DNSMOS):
        def __init__(self) -> None:  # noqa: D401 - same attributes as the parent, CPU sessions
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            cpu = ["CPUExecutionProvider"]
            self.primary_model_path = os.path.join(models, "sig_bak_ovr.onnx")
            self.onnx_sess = ort.InferenceSession(self.primary_model_path, opts, providers=cpu)
            self.p808_onnx_sess = ort.InferenceSession(os.path.join(models, "model_v8.onnx"), opts, providers=cpu)

    return _CpuDNSMOS(), threading.Lock()


def dnsmos(audio, sample_rate: int) -> DnsmosScore:
    """DNSMOS of one mono signal (any rate; resampled to 16 kHz, clipped to [-1, 1]).

    DNSMOS scores 9.01 s windows; shorter clips are repeated end to end to fill one
    (speechmos's behaviour), so short sentences still get a score.
    """
    model, lock = _dnsmos_model()
    x = np.clip(resample(audio, sample_rate), -1.0, 1.0).astype(np.float32)
    if x.size == 0:
        raise ValueError("DNSMOS of empty audio")
    with lock:
        out = model(x, PERCEPTUAL_RATE, False)
    return DnsmosScore(
        overall=float(out["ovrl_mos"]), signal=float(out["sig_mos"]), background=float(out["bak_mos"]), p808=float(out["p808_mos"])
    )
