"""Fixtures: real speech from espeak-ng (never downloaded), tiny models with random weights."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A vocoder turns a spectrogram back into a waveform.",
    "Please call Stella and ask her to bring these things with her from the store.",
]


def speak(text: str, path: Path, voice: str = "en-us", speed: int = 160) -> Path:
    """Render ``text`` with espeak-ng to a 22 050 Hz mono 16-bit wav."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.fail("espeak-ng is not installed (apt-get install -y espeak-ng); .ci/run installs it")
    subprocess.run([exe, "-v", voice, "-s", str(speed), "-w", str(path), text], check=True, capture_output=True)
    return path


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory) -> Path:
    """A folder of three espeak-ng sentences at 22 050 Hz (read-only: copy before writing next to them)."""
    folder = tmp_path_factory.mktemp("speech")
    for i, text in enumerate(SENTENCES):
        speak(text, folder / f"utt{i}.wav")
    return folder


@pytest.fixture(scope="session")
def speech_wav(speech_dir) -> Path:
    return speech_dir / "utt0.wav"
