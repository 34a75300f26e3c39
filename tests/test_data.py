"""Dataset, collator and sampler: aligned crops, skipped records, DDP shares, resumable order."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

from diffwave.audio import read_wav
from diffwave.data import CropBatchSampler, CropDataset, CropKey, DataError, collate, scan
from helpers import tiny_config

HOP = 256


def copy_corpus(src, dst):
    dst.mkdir(parents=True, exist_ok=True)
    for path in src.iterdir():
        shutil.copy(path, dst / path.name)
    return dst


def find_offsets(full: np.ndarray, crop: np.ndarray) -> list[int]:
    """Where the crop's frames sit in the full spectrogram (found by content, not by asking the code).

    espeak-ng ends in digital silence, whose frames are all alike: a crop there matches several places.
    """
    width = crop.shape[1]
    matches = [s for s in range(full.shape[1] - width + 1) if np.array_equal(full[:, s : s + width], crop)]
    assert matches
    return matches


def test_crops_are_aligned_frames_and_samples(preprocessed_dir):
    config = tiny_config(crop_mel_frames=20)
    inventory = scan([preprocessed_dir], config)
    assert len(inventory.records) == 3 and not inventory.too_short
    dataset = CropDataset(inventory.records, config)
    for index, record in enumerate(dataset.records):
        full_spec = np.load(record.spectrogram)
        full_audio = read_wav(record.wav, 22050)
        for seed in range(3):
            example = dataset[CropKey(index, (seed,))]
            assert example.spectrogram.shape == (80, 20) and example.audio.shape == (20 * HOP,)
            aligned = []
            for start in find_offsets(full_spec, example.spectrogram):
                expected = np.zeros(20 * HOP, np.float32)  # past the end of the wav: zeros
                real = full_audio[start * HOP : (start + 20) * HOP]
                expected[: len(real)] = real
                aligned.append(np.array_equal(example.audio, expected))
            assert any(aligned)


def test_last_frame_overhang_is_zero_padded(tmp_path, speech_wav):
    audio = read_wav(speech_wav, 22050)[: 15 * HOP + 100]  # 16 frames, the last covers 100 real samples
    sf.write(tmp_path / "a.wav", audio, 22050, subtype="FLOAT")
    from diffwave.preprocess import preprocess
    from runtime.bundle import FeatureSpec

    assert preprocess([tmp_path], FeatureSpec(), workers=1, progress=False).ok
    config = tiny_config(crop_mel_frames=16)
    dataset = CropDataset(scan([tmp_path], config).records, config)
    example = dataset[0]
    np.testing.assert_array_equal(example.audio[: len(audio)], audio)
    assert example.audio.shape == (16 * HOP,) and not example.audio[len(audio) :].any()


def test_same_key_same_crop_and_keys_differ(preprocessed_dir):
    config = tiny_config()
    dataset = CropDataset(scan([preprocessed_dir], config).records, config)
    a, b = dataset[CropKey(1, (0, 5))], dataset[CropKey(1, (0, 5))]
    np.testing.assert_array_equal(a.audio, b.audio)
    full = np.load(dataset.records[1].spectrogram)
    offsets = {find_offsets(full, dataset[CropKey(1, (0, s))].spectrogram)[0] for s in range(8)}
    assert len(offsets) > 4  # the crops are spread over the utterance


def test_short_and_unprocessed_records_are_skipped(tmp_path, preprocessed_dir, speech_wav):
    root = copy_corpus(preprocessed_dir, tmp_path / "c")
    shutil.copy(speech_wav, root / "not_preprocessed.wav")
    config = tiny_config(crop_mel_frames=300)
    frames = {p.name: np.load(p).shape[1] for p in root.glob("*.npy")}
    inventory = scan([root], config)
    assert {r.wav.name + ".spec.npy" for r in inventory.records} == {k for k, v in frames.items() if v >= 300}
    assert len(inventory.too_short) == sum(v < 300 for v in frames.values()) >= 1
    assert inventory.records
    assert [p.name for p in inventory.not_preprocessed] == ["not_preprocessed.wav"]
    assert "too short" in inventory.summary()


def test_collate_shapes(preprocessed_dir):
    config = tiny_config()
    dataset = CropDataset(scan([preprocessed_dir], config).records, config)
    batch = collate([dataset[CropKey(i % 3, (i,))] for i in range(4)])
    assert batch.audio.shape == (4, 16 * HOP) and batch.spectrogram.shape == (4, 80, 16)
    assert str(batch.audio.dtype) == "torch.float32" and str(batch.spectrogram.dtype) == "torch.float32"


def test_unconditional_crops_raw_audio(tmp_path, speech_dir):
    root = copy_corpus(speech_dir, tmp_path / "u")  # no spectrograms needed
    sf.write(root / "tiny.wav", np.zeros(1000, np.float32), 22050)
    config = tiny_config(unconditional=True, audio_len=8000)
    inventory = scan([root], config)
    assert len(inventory.records) == 3 and [p.name for p in inventory.too_short] == ["tiny.wav"]
    dataset = CropDataset(inventory.records, config)
    example = dataset[CropKey(0, (1,))]
    assert example.spectrogram is None and example.audio.shape == (8000,)
    full = read_wav(dataset.records[0].wav, 22050)
    starts = [s for s in range(len(full) - 8000 + 1) if np.array_equal(full[s : s + 8000], example.audio)]
    assert starts
    assert collate([example, example]).spectrogram is None


def test_sampler_shares_an_epoch_between_ranks():
    ranks = [CropBatchSampler(num_records=10, global_batch=4, rank=r, world_size=2, seed=3) for r in range(2)]
    assert ranks[0].steps_per_epoch == 2  # 10 records, 5 per rank, 2 batches of 2 (the remainder is dropped)
    epoch = [[k.index for batch in _take(s, 2) for k in batch] for s in ranks]
    assert len(epoch[0]) == len(epoch[1]) == 4
    assert not set(epoch[0]) & set(epoch[1])  # disjoint shares of one permutation
    next_epoch = [k.index for batch in _take(ranks[0], 4)[2:] for k in batch]
    assert next_epoch != epoch[0]  # reshuffled each epoch


def test_sampler_resumes_at_any_step():
    full = _take(CropBatchSampler(7, 3, 0, 1, seed=11), 12)
    for start in (0, 1, 2, 5, 9):
        assert _take(CropBatchSampler(7, 3, 0, 1, seed=11, start_step=start), 12 - start) == full[start:]


def test_corpus_smaller_than_a_batch_repeats():
    batches = _take(CropBatchSampler(num_records=1, global_batch=4, rank=0, world_size=1, seed=0), 3)
    assert all(len(b) == 4 and {k.index for k in b} == {0} for b in batches)
    assert len({k.seed for b in batches for k in b}) == 12  # but every crop is placed anew


def test_a_corpus_smaller_than_a_batch_is_drawn_evenly():
    # Before: 16 slots for 10 files gave files 0-5 two draws per epoch and files 6-9 one.
    counts = np.zeros(10, int)
    for batch in _take(CropBatchSampler(num_records=10, global_batch=20, rank=0, world_size=1, seed=0), 7):
        counts += np.bincount([k.index for k in batch], minlength=10)
    assert counts.tolist() == [14] * 10  # two whole copies per batch: exactly even
    counts = np.zeros(10, int)
    for batch in _take(CropBatchSampler(num_records=10, global_batch=16, rank=0, world_size=1, seed=0), 500):
        counts += np.bincount([k.index for k in batch], minlength=10)
    assert counts.sum() == 8000 and counts.max() < 1.15 * counts.min(), counts  # 800 each on average


def test_batch_must_split_over_ranks():
    with pytest.raises(DataError, match="batch size 5 does not split evenly over 2 processes"):
        CropBatchSampler(10, 5, 0, 2, seed=0)


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda root: None, "no .wav files"),
        (lambda root: sf.write(root / "a.wav", np.zeros(5000, np.float32), 22050), "run 'diffwave preprocess'"),
        (lambda root: (sf.write(root / "a.wav", np.zeros(5000, np.float32), 22050),
                       np.save(root / "a.wav.spec.npy", np.zeros((64, 20), np.float32))), "64 mel bands"),
        (lambda root: (sf.write(root / "a.wav", np.zeros(5000, np.float32), 22050),
                       np.save(root / "a.wav.spec.npy", np.zeros((80, 99), np.float32))), "99 frames for 5000 samples"),
        (lambda root: (sf.write(root / "a.wav", np.zeros(5000, np.float32), 22050),
                       (root / "a.wav.spec.npy").write_bytes(b"garbage")), "unreadable spectrogram"),
        (lambda root: (sf.write(root / "a.wav", np.zeros(5000, np.float32), 16000),
                       np.save(root / "a.wav.spec.npy", np.zeros((80, 20), np.float32))), "sample rate 16000 Hz"),
        (lambda root: (sf.write(root / "a.wav", np.zeros(2560, np.float32), 22050),
                       np.save(root / "a.wav.spec.npy", np.zeros((80, 11), np.float32))), "1 shorter than one crop"),
    ],
    ids=["empty", "unprocessed", "n_mels", "frames", "garbage", "rate", "all-short"],
)
def test_unusable_data_is_one_clear_error(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(DataError, match=message):
        scan([tmp_path], tiny_config())


def _take(sampler, n):
    out = []
    for batch in sampler:
        out.append(batch)
        if len(out) == n:
            return out
    return out
