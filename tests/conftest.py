"""Fixtures: real speech from espeak-ng (never downloaded), tiny models with random weights."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


def pytest_configure(config):
    # A suite started in the background by a shell without job control (`bash .ci/run &` in a
    # script) inherits SIGINT ignored, and so does every process it starts: our commands then
    # rightly keep ignoring Ctrl-C (diffwave.interrupts leaves an ignored signal alone), and the
    # tests that send it would wait for it forever. They test our handling, so start from Python's.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)

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


@pytest.fixture(scope="session")
def preprocessed_dir(tmp_path_factory, speech_dir) -> Path:
    """The espeak sentences with their ``.wav.spec.npy`` (read-only: training data for many tests)."""
    from diffwave.preprocess import preprocess
    from runtime.bundle import FeatureSpec

    folder = tmp_path_factory.mktemp("preprocessed")
    for wav in speech_dir.glob("*.wav"):
        shutil.copy(wav, folder / wav.name)
    report = preprocess([folder], FeatureSpec(), workers=1, progress=False)
    assert report.ok and len(report.written) == len(SENTENCES)
    return folder


@pytest.fixture
def one_thread():
    """Run a test's tiny trainings on one intra-op thread (restored afterwards).

    Tiny models gain nothing from a second thread, and on a busy 2-core machine two spinning
    OpenMP threads make a training step several times slower.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
