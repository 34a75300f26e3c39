"""Every file we publish appears whole or not at all, with the permissions a plain open() gives."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from diffwave.audio import write_wav
from runtime.bundle import atomic_output, stale_temporaries


@pytest.fixture
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    saved = os.umask(0o022)
    os.umask(saved)
    yield set_mask
    os.umask(saved)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_published_file_follows_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    target = tmp_path / "out.bin"
    with atomic_output(target) as tmp:
        tmp.write_bytes(b"whole")
        assert not target.exists()  # nothing visible under the final name while writing
    assert target.read_bytes() == b"whole"
    assert target.stat().st_mode & 0o777 == mode
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_failure_leaves_neither_file_nor_temporary(tmp_path):
    target = tmp_path / "out.wav"
    with pytest.raises(RuntimeError):
        with atomic_output(target, suffix=".wav") as tmp:
            assert tmp.suffix == ".wav"
            tmp.write_bytes(b"half")
            raise RuntimeError("writer crashed")
    assert list(tmp_path.iterdir()) == []


def test_vocoded_wav_is_readable_by_others(tmp_path, umask):
    umask(0o022)
    audio = np.sin(np.linspace(0, 100, 2205)).astype(np.float32) * 0.5
    path = write_wav(tmp_path / "out.wav", audio, 22050)
    assert path.stat().st_mode & 0o044 == 0o044  # mkstemp's 0600 would hide it from a web server
    read, sr = sf.read(path, dtype="float32")
    assert sr == 22050 and np.abs(read - audio).max() < 1e-4


def test_stale_temporaries_names_what_each_was_for(tmp_path):
    # While the block runs, its temporary is what a killed process would leave behind.
    with atomic_output(tmp_path / "x.wav.spec.npy") as spec_tmp, atomic_output(tmp_path / "y.wav", suffix=".wav") as wav_tmp:
        (tmp_path / ".notes.tmp").write_text("not ours: no random part")
        assert list(stale_temporaries(tmp_path)) == [("x.wav.spec.npy", spec_tmp)]
        assert list(stale_temporaries(tmp_path, suffix=".wav")) == [("y.wav", wav_tmp)]


def test_checkpoint_is_readable_by_others_and_leaves_no_temporary(tmp_path, umask):
    from diffwave.checkpoint import Checkpoint, save_checkpoint
    from helpers import random_model, tiny_config

    umask(0o022)
    config = tiny_config()
    path = save_checkpoint(tmp_path, Checkpoint(step=7, model=random_model(config).state_dict(), params=config.to_params()))
    assert path.name == "weights-7.pt"
    assert path.stat().st_mode & 0o044 == 0o044  # a serving account reads the weights a training account wrote
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights-7.pt", "weights.pt"]
