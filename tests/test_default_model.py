"""The model and sample shipped in the package: they load, export through the gate, and vocode.

Three quality checks, all relative to what a broken network does, so that a corrupted,
truncated or wrongly-shipped checkpoint fails CI:

* vocoding the sample: the shipped weights must make its features far better than an
  untrained network of the same architecture does (mel-cycle distance);
* the last reverse step on the sample's recording, noised to that step's level: PESQ-WB of
  the network's estimate must clear a floor that every broken variant stays under;
* PESQ-WB of the vocoded sample, averaged over six noise seeds, must clear a floor that every
  broken variant stays under (the issue's loose quality bar). Before stop 31 this could not be
  a guard: the step-28 500 model shipped then scored 1.05–1.08, a random network up to 1.12.

models/README.md ("The bar") has the tables these floors come from.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from diffwave.checkpoint import load_model
from diffwave.default_model import DEMO_PROFILE, bundle_key, default_model, exporter_sources
from diffwave.evaluation.denoising import score_one_step
from diffwave.evaluation.metrics import mel_cycle_distance_db

from helpers import randomize_weights


def test_shipped_files_load_and_are_small():
    files = default_model()
    assert files.weights.stat().st_size <= 16 * 1024 * 1024
    model = load_model(files.weights)
    spec = np.load(files.sample_spectrogram)
    assert spec.shape[0] == model.config.features.n_mels and spec.dtype == np.float32
    assert DEMO_PROFILE.min_frames <= spec.shape[1] <= DEMO_PROFILE.max_frames
    audio, sr = sf.read(files.sample_wav)
    assert sr == model.config.features.sample_rate and audio.ndim == 1
    assert spec.shape[1] == 1 + len(audio) // model.config.features.hop_samples


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    out = tmp_path_factory.mktemp("demo") / "out.wav"
    env = {"DIFFWAVE_CACHE": str(cache), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    first = subprocess.run([sys.executable, "-m", "diffwave", "demo", "-o", str(out)], capture_output=True, text=True, env=env)
    return first, out, env


def test_demo_exports_through_the_gate_and_writes_the_sample(demo_run):
    first, out, _ = demo_run
    assert first.returncode == 0, first.stderr
    assert "first use: exporting" in first.stderr and "eps rel err" in first.stderr
    assert re.search(r"real-time factor \d+\.\d+", first.stdout)
    audio, sr = sf.read(out)
    files = default_model()
    frames = np.load(files.sample_spectrogram).shape[1]
    assert len(audio) == frames * 256 and sr == 22050
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0.01


def test_second_demo_run_reuses_the_exported_bundle(demo_run, tmp_path):
    _, _, env = demo_run
    again = subprocess.run([sys.executable, "-m", "diffwave", "demo", "-o", str(tmp_path / "b.wav")], capture_output=True, text=True, env=env)
    assert again.returncode == 0, again.stderr
    assert "first use" not in again.stderr


def test_the_cache_key_follows_the_weights_and_the_exporter(tmp_path):
    # An upgrade that changes the exporter must not reuse the bundle an older one wrote.
    weights, exporter = tmp_path / "weights.pt", tmp_path / "step_graph.py"
    weights.write_bytes(b"weights")
    exporter.write_text("opset = 17\n")
    key = bundle_key(weights, [exporter])
    assert bundle_key(weights, [exporter]) == key and len(key) == 16
    exporter.write_text("opset = 18\n")
    assert bundle_key(weights, [exporter]) != key
    exporter.write_text("opset = 17\n")
    weights.write_bytes(b"weights, retrained")
    assert bundle_key(weights, [exporter]) != key
    names = {p.name for p in exporter_sources()}
    assert {"bundle_export.py", "step_graph.py", "parity.py", "bundle.py"} <= names


def test_demo_exports_again_over_a_cached_bundle_that_no_longer_loads(demo_run, tmp_path):
    _, _, env = demo_run
    cache = tmp_path / "cache"
    shutil.copytree(env["DIFFWAVE_CACHE"], cache)
    (bundle,) = cache.iterdir()
    (bundle / "model.json").write_text("[]")  # e.g. a disk that filled up while a user edited it
    env = {**env, "DIFFWAVE_CACHE": str(cache)}
    again = subprocess.run([sys.executable, "-m", "diffwave", "demo", "-o", str(tmp_path / "c.wav")], capture_output=True, text=True, env=env)
    assert again.returncode == 0, again.stderr
    assert "the cached bundle does not load" in again.stderr and "exporting it again" in again.stderr
    assert (tmp_path / "c.wav").is_file()
    # A bad --steps is refused before the first run's export (it was checked on the exported bundle).
    empty = {**env, "DIFFWAVE_CACHE": str(tmp_path / "empty")}
    bad = subprocess.run([sys.executable, "-m", "diffwave", "demo", "--steps", "bogus", "-o", str(tmp_path / "d.wav")],
                         capture_output=True, text=True, env=empty)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: --steps 'bogus': the demo runs fast or full (diffwave vocode takes betas)"
    assert not (tmp_path / "d.wav").exists() and not (tmp_path / "empty").exists()


def test_two_first_demos_at_once_share_one_export(tmp_path):
    # Before: each took the other's staging folder for a killed export's leftovers and removed it,
    # and the first demo died with an ONNX Runtime traceback ("File doesn't exist").
    env = {"DIFFWAVE_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    runs = [subprocess.Popen([sys.executable, "-m", "diffwave", "demo", "-o", str(tmp_path / f"{i}.wav")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
    results = [(run.wait(), *run.communicate()) for run in runs]
    assert all(code == 0 for code, _, _ in results), results
    assert sum("first use: exporting" in err for _, _, err in results) == 1  # the other waited and reused it
    # A bundle folder a killed export left without model.json is the tool's own: exported over, not refused.
    (bundle,) = (tmp_path / "cache").iterdir()  # the bundle alone: the export lock is gone too
    (bundle / "model.json").unlink()
    again = subprocess.run([sys.executable, "-m", "diffwave", "demo", "-o", str(tmp_path / "c.wav")],
                           capture_output=True, text=True, env=env)
    assert again.returncode == 0, again.stderr
    assert "first use: exporting" in again.stderr and (bundle / "model.json").is_file()


def test_an_unusable_cache_names_the_setting_that_moves_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = {"DIFFWAVE_CACHE": str(blocker / "cache"), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-m", "diffwave", "demo", "-o", str(tmp_path / "o.wav")], capture_output=True,
                         text=True, env=env)
    assert run.returncode == 1
    assert run.stderr.strip() == (f"error: {blocker / 'cache'}: Not a directory (the demo exports the bundled model into "
                                  "this cache on first use: set DIFFWAVE_CACHE to a writable folder)")
    assert not (tmp_path / "o.wav").exists()


def test_shipped_weights_beat_an_untrained_network(demo_run):
    _, out, _ = demo_run
    files = default_model()
    features = np.load(files.sample_spectrogram)
    model = load_model(files.weights)
    spec = model.config.features
    trained = mel_cycle_distance_db(sf.read(out, dtype="float32")[0], features, spec)

    from runtime import Vocoder

    untrained = Vocoder.from_module(randomize_weights(load_model(files.weights), seed=1), model.config.bundle_metadata())
    baseline = mel_cycle_distance_db(untrained(features, seed=0)[0], features, spec)
    # An untrained network's output is shaped noise, tens of dB away from the features (≈ 43 dB);
    # the shipped step-165 000 model (stop 43) ≈ 5.8–6.3 dB away, step 133 000 ≈ 6.1–6.4, step 118 500 ≈ 6.4–6.8, step 103 500 ≈ 6.6–7.0, step 90 000 ≈ 6.8–7.2, as was step 81 000, step 72 000 ≈ 7.1–7.5, step 64 500 ≈ 7.4–7.8, step 28 500 ≈ 9–10, step 12 000 ≈ 12–13, step 2600 ≈ 16: it must
    # close at least half of the gap.
    assert trained < 0.5 * baseline, (trained, baseline)


#: PESQ-WB floor for the shipped model's last reverse step on the demo recording (level 0 of the
#: fast schedule, noise std 0.01). Measured on that recording (models/README.md, "The bar"): the
#: noisy input scores 1.36; networks that remove nothing (random, shuffled or fresh weights, a
#: wrong step embedding) 1.36–1.40; the step-9500 weights with the conditioner zeroed 1.91, with
#: 30 % weight noise 1.88; over six noise seeds the step-9500 model 2.43–2.45, the step-18 000
#: model 2.54–2.56, step 21 000 2.76–2.79, step 24 500 2.90–2.95, step 28 500 3.03–3.06, run D8's
#: step 64 500 (shipped at stop 31) 3.39–3.43, step 72 000 (stop 32) 3.46–3.50, step 81 000 (stop 33)
#: 3.49–3.54, step 90 000 (stop 34) 3.55–3.61, step 103 500 (stop 36) 3.59–3.68, step 118 500 (stop 38) 3.65–3.76, step 133 000 (stop 40) 3.69–3.80,
#: the shipped step-165 000 model (stop 43) 3.78–3.87;
#: the model shipped until stop 8, 2.33.
LAST_STEP_PESQ_FLOOR = 2.1


def test_shipped_last_step_removes_noise_a_broken_network_leaves():
    files = default_model()
    features = np.load(files.sample_spectrogram)
    audio, sr = sf.read(files.sample_wav, dtype="float32")
    shipped = score_one_step(load_model(files.weights).eval(), audio, features, sr, level=0, seed=0)
    broken = score_one_step(randomize_weights(load_model(files.weights), seed=1).eval(), audio, features, sr, level=0, seed=0)
    assert shipped.denoised_pesq > LAST_STEP_PESQ_FLOOR > broken.denoised_pesq, (shipped, broken)
    assert shipped.denoised_snr_db > shipped.noisy_snr_db + 3, shipped


#: Floor for the mean PESQ-WB of the *vocoded* demo sample over noise seeds 0–5 (fast schedule,
#: PyTorch backend): the issue's "loose version of the quality bar". Measured at stops 32–43 on that
#: sample (models/README.md, "The bar"): step 72 000 1.319 (single seeds 1.20–1.40), step 81 000
#: 1.315 (1.23–1.41), step 90 000 (stop 34) 1.303 (1.23–1.37), step 103 500 (stop 36) 1.348 (1.26–1.47), step 118 500 (stop 38) 1.360 (1.27–1.50), step 133 000 (stop 40) 1.405 (1.33–1.54), the shipped step-165 000 model (stop 43) 1.371 (1.31–1.43), step 64 500 1.287 (1.18–1.38); broken networks made from step 64 500, each over the same six seeds: random weights (this test's) 1.037,
#: fresh initialisation (ε̂ = 0) 1.048, weights shuffled within each tensor 1.032, 30 % weight
#: noise 1.049, conditioner projections zeroed 1.024; the step-28 500 model shipped until stop 30
#: 1.070. The floor sits 0.10 above the best broken network and 0.22 below the shipped model.
#: A single seed could not be the guard: one seed of the fresh initialisation scores 1.197, above
#: step 64 500's worst seed.
VOCODED_PESQ_FLOOR = 1.15
VOCODED_PESQ_SEEDS = range(6)


def _mean_vocoded_pesq(model, audio, features, sr) -> float:
    from diffwave.evaluation.perceptual import pesq_wb
    from runtime import Vocoder

    vocoder = Vocoder.from_module(model.eval(), model.config.bundle_metadata())
    scores = [pesq_wb(vocoder(features, steps="fast", seed=s)[0][: audio.shape[0]], audio, sr) for s in VOCODED_PESQ_SEEDS]
    return float(np.mean(scores))


def test_vocoded_sample_pesq_clears_a_floor_a_broken_network_stays_under():
    files = default_model()
    features = np.load(files.sample_spectrogram)
    audio, sr = sf.read(files.sample_wav, dtype="float32")
    shipped = _mean_vocoded_pesq(load_model(files.weights), audio, features, sr)
    broken = _mean_vocoded_pesq(randomize_weights(load_model(files.weights), seed=1), audio, features, sr)
    assert shipped > VOCODED_PESQ_FLOOR > broken, (shipped, broken)
