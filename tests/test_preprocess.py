"""``diffwave preprocess`` on real espeak-ng speech and on every kind of bad file."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from diffwave.audio import read_wav
from diffwave.cli import app
from diffwave.features import log_mel_spectrogram

runner = CliRunner()


def run(*args):
    return runner.invoke(app, ["preprocess", "--no-progress", *map(str, args)])


@pytest.fixture
def corpus(tmp_path, speech_dir):
    """A writable copy of the espeak sentences, one of them in a subfolder."""
    root = tmp_path / "wavs"
    (root / "sub").mkdir(parents=True)
    shutil.copy(speech_dir / "utt0.wav", root / "utt0.wav")
    shutil.copy(speech_dir / "utt1.wav", root / "sub" / "utt1.wav")
    return root


def spec_of(wav):
    return wav.with_name(wav.name + ".spec.npy")


def leftovers(root):
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_writes_features_recursively(corpus):
    result = run(corpus, "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "2 written, 0 up to date, 0 failed" in result.output
    for wav in (corpus / "utt0.wav", corpus / "sub" / "utt1.wav"):
        spec = np.load(spec_of(wav))
        audio = read_wav(wav, 22050)
        assert spec.dtype == np.float32 and spec.shape == (80, 1 + len(audio) // 256)
        np.testing.assert_array_equal(spec, log_mel_spectrogram(audio).numpy())
    assert not leftovers(corpus)


def test_one_good_one_broken_file(corpus):
    (corpus / "sub" / "utt1.wav").unlink()
    broken = corpus / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really a wav file")
    result = run(corpus, "--workers", "1")
    assert result.exit_code == 1
    assert "1 written, 0 up to date, 1 failed" in result.output
    assert f"{broken}: unreadable audio" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: 1 file(s) could not be preprocessed")
    assert spec_of(corpus / "utt0.wav").is_file()
    assert not spec_of(broken).exists() and not leftovers(corpus)


def test_every_bad_input_is_listed_with_its_reason(tmp_path, speech_wav):
    root = tmp_path / "bad"
    root.mkdir()
    audio, sr = sf.read(str(speech_wav), dtype="float32")
    sf.write(root / "rate.wav", audio, 16000)
    sf.write(root / "empty.wav", np.zeros(0, np.float32), sr)
    sf.write(root / "short.wav", audio[:500], sr)
    (root / "text.wav").write_text("hello")
    bad_values = audio.copy()
    bad_values[100] = np.nan
    sf.write(root / "nan.wav", bad_values, sr, subtype="FLOAT")
    shutil.copy(speech_wav, root / "good.wav")
    result = run(root, "--workers", "1")
    assert result.exit_code == 1
    err = result.stderr
    assert f"{root / 'rate.wav'}: sample rate 16000 Hz, expected 22050 Hz" in err
    assert f"{root / 'empty.wav'}: empty audio" in err
    assert f"{root / 'short.wav'}: 500 samples is too short: the features need at least 513" in err
    assert f"{root / 'text.wav'}: unreadable audio" in err
    assert f"{root / 'nan.wav'}: audio contains NaN" in err
    assert "1 written, 0 up to date, 5 failed" in result.output
    assert sorted(p.name for p in root.glob("*.npy")) == ["good.wav.spec.npy"]


def test_clips_from_half_a_window_up_get_spectrograms_like_lmnt(tmp_path, speech_wav):
    # The centred STFT needs n_fft/2 + 1 samples; a whole window (1024) was asked for before, so
    # clips lmnt preprocesses cleanly (513-1023 samples) were reported as failures.
    audio, sr = sf.read(str(speech_wav), dtype="float32")
    for n in (513, 600, 1023):
        sf.write(tmp_path / f"c{n}.wav", audio[20000 : 20000 + n], sr, subtype="FLOAT")
    result = run(tmp_path, "--workers", "1")
    assert result.exit_code == 0, result.output
    for n in (513, 600, 1023):
        assert np.load(spec_of(tmp_path / f"c{n}.wav")).shape == (80, 1 + n // 256)


def test_wavs_in_symlinked_folders_are_found_once(tmp_path, speech_wav):
    # Datasets are often assembled from symlinked folders; Path.rglob skipped them silently.
    real = tmp_path / "real" / "sub"
    real.mkdir(parents=True)
    shutil.copy(speech_wav, real / "b.wav")
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(speech_wav, data / "a.wav")
    (data / "linked").symlink_to(tmp_path / "real", target_is_directory=True)
    (data / "linked" / "sub" / "loop").symlink_to(data, target_is_directory=True)  # a link back up the tree
    result = run(data, "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "2 written" in result.output
    assert spec_of(data / "linked" / "sub" / "b.wav").is_file()


def test_skips_up_to_date_and_redoes_changed(corpus):
    assert run(corpus, "--workers", "1").exit_code == 0
    spec = spec_of(corpus / "utt0.wav")
    before = spec.stat().st_mtime_ns
    result = run(corpus, "--workers", "1")
    assert result.exit_code == 0 and "0 written, 2 up to date" in result.output
    assert spec.stat().st_mtime_ns == before
    # The wav changes after its features were made: they are stale and get recomputed.
    wav = corpus / "utt0.wav"
    os.utime(wav, ns=(before + 10**9, before + 10**9))
    result = run(corpus, "--workers", "1")
    assert "1 written, 1 up to date" in result.output
    assert spec.stat().st_mtime_ns > before
    assert "2 written" in run(corpus, "--workers", "1", "--force").output


def test_hidden_files_are_not_data_and_stale_temporaries_go(corpus):
    # A killed worker leaves ".x.wav.spec.npy.<random>.tmp"; macOS copies leave "._x.wav" forks;
    # an interrupted corpus run could leave ".x.wav.<random>.wav". None of them is a recording.
    wav = corpus / "utt0.wav"
    stale = corpus / ".utt0.wav.spec.npy.6mqju0i_.tmp"
    stale.write_bytes(b"half a spectrogram")
    for name in ("._utt0.wav", ".utt0.wav.0iuixgk4.wav"):
        (corpus / name).write_bytes(wav.read_bytes())
    (corpus / ".ipynb_checkpoints").mkdir()
    shutil.copy(wav, corpus / ".ipynb_checkpoints" / "copy.wav")
    result = run(corpus, "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "2 written, 0 up to date, 0 failed" in result.output  # utt0 and sub/utt1 only
    assert not stale.exists()
    assert sorted(p.name for p in corpus.rglob("*.spec.npy")) == ["utt0.wav.spec.npy", "utt1.wav.spec.npy"]


def test_stereo_is_downmixed_with_a_warning(tmp_path, speech_wav):
    audio, sr = sf.read(str(speech_wav), dtype="float32")
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.stack([audio, audio * 0.5], axis=1), sr)
    result = run(stereo, "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "2 channels, downmixed to mono" in result.output
    with pytest.warns(UserWarning, match="downmixed"):
        mono = read_wav(stereo, 22050)
    np.testing.assert_allclose(mono, np.clip(audio * 0.75, -1, 1), atol=1e-4)
    np.testing.assert_array_equal(np.load(spec_of(stereo)), log_mel_spectrogram(mono).numpy())


def test_parallel_workers(corpus, speech_dir):
    shutil.copy(speech_dir / "utt2.wav", corpus / "utt2.wav")
    (corpus / "broken.wav").write_text("nope")
    result = run(corpus, "--workers", "2")
    assert result.exit_code == 1
    assert "3 written, 0 up to date, 1 failed" in result.output
    np.testing.assert_array_equal(
        np.load(spec_of(corpus / "utt2.wav")), log_mel_spectrogram(read_wav(corpus / "utt2.wav", 22050)).numpy()
    )


def test_feature_settings_come_from_config(tmp_path, corpus):
    config = tmp_path / "c.json"
    config.write_text('{"feature_preset": "ln-slaney", "feature_mel_scale": "slaney", "feature_mel_norm": "slaney", '
                      '"feature_compression": "ln", "feature_f_min": 0.0, "feature_f_max": 8000.0, "feature_normalized": false}')
    assert run(corpus / "utt0.wav", "--config", config).exit_code == 0
    from diffwave.features import PRESETS

    audio = read_wav(corpus / "utt0.wav", 22050)
    np.testing.assert_array_equal(np.load(spec_of(corpus / "utt0.wav")), log_mel_spectrogram(audio, PRESETS["ln-slaney"]).numpy())


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: root / "missing", "no such file or folder"),
        (lambda root: root, "no .wav files in"),
        (lambda root: (root / "notes.txt").write_text("x") and root / "notes.txt", "not a folder or a .wav file"),
    ],
    ids=["missing", "no-wavs", "not-a-wav"],
)
def test_bad_paths(tmp_path, make, message):
    result = run(make(tmp_path))
    assert result.exit_code == 1
    assert message in result.stderr and result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_config(tmp_path, corpus):
    config = tmp_path / "c.json"
    config.write_text('{"n_melz": 64}')
    result = run(corpus, "--config", config)
    assert result.exit_code == 1 and "unknown config key(s) n_melz" in result.stderr



@pytest.mark.parametrize(
    "settings,expected",
    [
        ('{"n_mels": 0}', "features: n_mels must be a positive integer, got 0"),
        ('{"n_mels": "x"}', "features: n_mels must be a positive integer, got 'x'"),
        ('{"n_fft": 0}', "features: n_fft must be a positive integer, got 0"),
        ('{"feature_mel_scale": "bogus"}', "features: mel_scale must be one of"),
        ('{"feature_compression": "bogus"}', "features: compression must be one of"),
    ],
)
def test_feature_settings_no_stft_can_use_are_refused_before_any_file(tmp_path, corpus, settings, expected):
    # Before: n_mels 0 wrote empty spectrograms with exit 0, the others blamed every wav in turn.
    config = tmp_path / "c.json"
    config.write_text(settings)
    before = sorted(p.name for p in corpus.rglob("*"))
    result = run(corpus, "--config", config)
    assert result.exit_code == 1 and result.stderr.strip().startswith(f"error: {config}: {expected}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in corpus.rglob("*")) == before


def test_a_folder_in_place_of_a_spectrogram_is_a_failure_not_up_to_date(tmp_path, speech_wav):
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(speech_wav, folder / "a.wav")
    spec_of(folder / "a.wav").mkdir()  # newer than the wav, but not a spectrogram
    result = run(folder, "--workers", "1")
    assert result.exit_code == 1 and "0 written, 0 up to date, 1 failed" in result.output, result.output


def test_changed_feature_settings_redo_a_folder_and_train_refuses_stale_ones(tmp_path, speech_wav):
    # A .spec.npy does not say which settings made it. Before the record, a config with another
    # f_max found every file "up to date", and training on the old files went without a word.
    import json

    from diffwave.data import DataError, scan
    from diffwave.config import DiffWaveConfig

    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(speech_wav, folder / "a.wav")
    shutil.copy(speech_wav, folder / "b.wav")
    assert run(folder, "--workers", "1").exit_code == 0
    assert json.loads((folder / ".features.json").read_text())["f_max"] is None
    config = tmp_path / "fmax.json"
    config.write_text('{"feature_f_max": 8000.0, "crop_mel_frames": 8}')
    narrower = DiffWaveConfig.from_json(config)
    with pytest.raises(DataError, match=r"data: its spectrograms were made with other feature settings \(f_max None -> 8000.0, says .features.json\)"):
        scan([folder], narrower)
    old = np.load(spec_of(folder / "a.wav"))
    result = run(folder, "--workers", "1", "--config", config)
    assert result.exit_code == 0 and "2 written, 0 up to date" in result.output, result.output
    assert not np.array_equal(np.load(spec_of(folder / "a.wav")), old)  # made again, with the new f_max
    assert len(scan([folder], narrower).records) == 2
    assert "0 written, 2 up to date" in run(folder, "--workers", "1", "--config", config).output
    # One file given alone with other settings: the folder is mixed, so it keeps no record.
    assert run(folder / "a.wav", "--workers", "1").exit_code == 0
    assert not (folder / ".features.json").exists()
