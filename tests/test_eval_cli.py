"""`diffwave eval`: the copy-synthesis report (rows, means, SNR, JSON schema) and the command end to end."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from diffwave.cli import app
from diffwave.evaluation.copy_synthesis import Synthesizer, evaluate, find_wavs
from diffwave.evaluation.griffin_lim import griffin_lim
from diffwave.evaluation.report import SystemInfo
from runtime.bundle import FeatureSpec

runner = CliRunner()

#: The JSON contract, spelled out here (not derived from the dataclasses) so a rename fails this test.
TOP_KEYS = {"schema", "steps", "seed", "sample_rate", "griffin_lim_iterations", "perceptual", "systems", "files", "rows", "means", "snr", "mean_snr", "skipped"}
ROW_KEYS = {
    "file", "system", "mel_cycle_db", "mrstft", "periodicity", "pesq_wb",
    "dnsmos_overall", "dnsmos_signal", "dnsmos_background", "dnsmos_p808",
}
SYSTEM_KEYS = {"name", "kind", "path"}
SNR_KEYS = {"file", "a", "b", "snr_db"}


def check_schema(doc: dict, n_files: int, models: list[str], perceptual: bool) -> None:
    assert set(doc) == TOP_KEYS and doc["schema"] == "diffwave-eval/1"
    names = [s["name"] for s in doc["systems"]]
    assert all(set(s) == SYSTEM_KEYS for s in doc["systems"])
    assert names == ["original", f"griffin-lim-{doc['griffin_lim_iterations']}", *models]
    assert len(doc["files"]) == n_files
    assert len(doc["rows"]) == n_files * len(names) and all(set(r) == ROW_KEYS for r in doc["rows"])
    assert [m["system"] for m in doc["means"]] == names and all(m["file"] == "mean" for m in doc["means"])
    pairs = len(models) * (len(models) - 1) // 2
    assert len(doc["snr"]) == n_files * pairs and len(doc["mean_snr"]) == pairs
    assert all(set(s) == SNR_KEYS for s in doc["snr"] + doc["mean_snr"])
    for row in doc["rows"] + doc["means"]:
        assert isinstance(row["mel_cycle_db"], float) and isinstance(row["mrstft"], float)
        assert isinstance(row["periodicity"], float)
        for key in ("pesq_wb", "dnsmos_overall", "dnsmos_signal", "dnsmos_background", "dnsmos_p808"):
            assert (row[key] is not None) == perceptual, (key, row)


@pytest.fixture(scope="module")
def short_dir(speech_dir, tmp_path_factory) -> Path:
    """The espeak-ng sentences cut to their first 1.5 s: the same speech, a third of the compute."""
    import soundfile as sf

    folder = tmp_path_factory.mktemp("short")
    for wav in sorted(speech_dir.glob("*.wav")):
        audio, sr = sf.read(str(wav), dtype="float32")
        sf.write(str(folder / wav.name), audio[: int(1.5 * sr)], sr, subtype="PCM_16")
    return folder


def _gl_synth(name: str, iterations: int) -> Synthesizer:
    """A real, weight-free vocoder to exercise the report without a trained model."""
    return Synthesizer(SystemInfo(name, "griffin-lim"), lambda f: griffin_lim(f, iterations=iterations, seed=5))


def test_report_rows_means_and_snr(short_dir, tmp_path):
    files = find_wavs([short_dir])[:2]
    report = evaluate(
        files, [_gl_synth("gl-2", 2), _gl_synth("gl-16", 16)], FeatureSpec(), griffin_lim_iterations=8,
        perceptual=False, progress=False, save_audio=tmp_path / "audio",
    )
    doc = json.loads(report.to_json())
    check_schema(doc, 2, ["gl-2", "gl-16"], perceptual=False)
    by = {(r["file"], r["system"]): r for r in doc["rows"]}
    for f in doc["files"]:
        assert by[(f, "original")]["mel_cycle_db"] == 0.0 and by[(f, "original")]["mrstft"] == 0.0
        # more Griffin-Lim iterations honour the features better
        assert by[(f, "gl-16")]["mel_cycle_db"] < by[(f, "gl-2")]["mel_cycle_db"]
    mean = {m["system"]: m for m in doc["means"]}
    expected = np.mean([by[(f, "gl-2")]["mel_cycle_db"] for f in doc["files"]])
    assert mean["gl-2"]["mel_cycle_db"] == pytest.approx(expected)
    snr = doc["snr"][0]
    assert (snr["a"], snr["b"]) == ("gl-2", "gl-16") and math.isfinite(snr["snr_db"])
    assert sorted(p.name for p in (tmp_path / "audio" / "gl-16").iterdir()) == sorted(Path(f).name for f in doc["files"])
    assert not (tmp_path / "audio" / "original").exists()
    table = report.table()
    assert "griffin-lim-8" in table and "mean" in table and "gl-16 vs gl-2" in table


def test_spectrogram_figures_have_a_panel_per_system(short_dir, tmp_path):
    import matplotlib.image

    files = find_wavs([short_dir])[:1]
    heights = []
    for synths, folder in (([], "one"), ([_gl_synth("gl-2", 2), _gl_synth("gl-4", 4)], "three")):
        evaluate(files, synths, FeatureSpec(), griffin_lim_iterations=2, perceptual=False, progress=False, spectrograms=tmp_path / folder)
        written = list((tmp_path / folder).iterdir())
        assert [p.name for p in written] == [f"{files[0].stem}.png"]  # no temporary file left behind
        heights.append(matplotlib.image.imread(written[0]).shape[0])
    assert heights[1] > 1.5 * heights[0]  # original + Griffin-Lim, then two more panels


def test_log_magnitude_puts_a_tone_in_its_bin():
    from diffwave.evaluation.figures import log_magnitude_db

    spec = FeatureSpec()
    bin_hz = spec.sample_rate / spec.n_fft
    tone = np.sin(2 * np.pi * 40 * bin_hz * np.arange(spec.sample_rate) / spec.sample_rate)
    image = log_magnitude_db(tone, spec)
    assert image.shape[0] == spec.n_fft // 2 + 1
    assert set(np.argmax(image[:, 2:-2], axis=0)) == {40}


def test_a_mean_over_fewer_files_says_which_it_left_out():
    # PESQ of a clip with no utterance is NaN: the mean used to skip it without a word.
    from diffwave.evaluation.report import EvalReport, Row

    system = SystemInfo("onnx:m", "onnx")
    rows = [Row("a.wav", "onnx:m", mel_cycle_db=2.0, pesq_wb=1.5), Row("b.wav", "onnx:m", mel_cycle_db=4.0, pesq_wb=math.nan),
            Row("c.wav", "onnx:m", mel_cycle_db=6.0, pesq_wb=2.5)]
    report = EvalReport("fast", 0, 22050, 8, True, [system], ["a.wav", "b.wav", "c.wav"], rows=rows).finalize()
    (mean,) = report.means
    assert mean.mel_cycle_db == pytest.approx(4.0) and mean.pesq_wb == pytest.approx(2.0)
    assert mean.dnsmos_overall is None  # not computed at all: no note
    doc = json.loads(report.to_json())
    assert doc["skipped"] == [{"system": "onnx:m", "metric": "pesq_wb", "files": ["b.wav"], "of": 3}]
    assert "  onnx:m: the mean PESQ-WB covers 2 of 3 files (no value for b.wav)" in report.table().splitlines()


def test_identical_systems_have_infinite_snr_written_as_null(short_dir):
    files = find_wavs([short_dir])[:1]
    report = evaluate(files, [_gl_synth("a", 2), _gl_synth("b", 2)], FeatureSpec(), griffin_lim_iterations=2, perceptual=False, progress=False)
    assert report.snr[0].snr_db == math.inf
    doc = json.loads(report.to_json())  # strict JSON: no Infinity/NaN tokens
    assert doc["snr"][0]["snr_db"] is None and doc["mean_snr"][0]["snr_db"] is None
    assert "inf" in report.table()


def test_report_with_perceptual_metrics(short_dir):
    files = find_wavs([short_dir])[:1]
    report = evaluate(files, [], FeatureSpec(), perceptual=True, progress=False)
    doc = json.loads(report.to_json())
    check_schema(doc, 1, [], perceptual=True)
    original, gl = doc["means"]
    assert original["pesq_wb"] > 4.4 and 2.0 < gl["pesq_wb"] < original["pesq_wb"]  # measured GL-64 ≈ 2.9–3.2
    for row in doc["means"]:
        assert all(1.0 <= row[k] <= 5.0 for k in ("dnsmos_overall", "dnsmos_signal", "dnsmos_background", "dnsmos_p808"))


# --------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------
def test_eval_needs_a_model_and_wavs(tmp_path, speech_dir):
    result = runner.invoke(app, ["eval", str(speech_dir)])
    assert result.exit_code != 0 and "at least one model" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["eval", "--onnx", str(tmp_path / "model.onnx"), str(empty)])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(empty) in lines[0] and "no .wav" in lines[0]


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    """A random-weight tiny model as a checkpoint folder and as an ONNX bundle (same weights)."""
    from helpers import random_model, tiny_config

    from diffwave.checkpoint import Checkpoint, save_checkpoint
    from export.step_graph import export_step_onnx

    root = tmp_path_factory.mktemp("tiny")
    config = tiny_config()
    model = random_model(config, seed=3)
    save_checkpoint(root / "ckpt", Checkpoint(step=1, model=model.state_dict(), params=config.to_params()))
    onnx_dir = root / "bundle"
    onnx_dir.mkdir()
    export_step_onnx(model, onnx_dir / "model.onnx")
    replace(config.bundle_metadata(), onnx={"fp32": "model.onnx"}).write(onnx_dir)
    return root / "ckpt", onnx_dir / "model.onnx"


def test_eval_command_end_to_end(tiny_bundle, short_dir, tmp_path):
    ckpt, onnx = tiny_bundle
    data = tmp_path / "data"
    data.mkdir()
    for name in ("utt0.wav", "utt1.wav"):
        shutil.copy(short_dir / name, data / name)
    out = tmp_path / "eval.json"
    result = runner.invoke(
        app, ["eval", "--checkpoint", str(ckpt), "--onnx", str(onnx), str(data), "--steps", "fast", "--seed", "4",
              "--json", str(out), "--no-perceptual", "--griffin-lim-iters", "16", "--spectrograms", str(tmp_path / "figs")],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["utt0.png", "utt1.png"]
    doc = json.loads(out.read_text())
    check_schema(doc, 2, ["checkpoint:ckpt", "onnx:model.onnx"], perceptual=False)
    assert doc["steps"] == "fast" and doc["seed"] == 4
    # same weights, same noise: PyTorch and ONNX Runtime agree to float32 rounding, and only to
    # rounding: bit-identical rows (SNR null, i.e. infinite) would mean one backend served both
    assert all(s["snr_db"] is not None and s["snr_db"] > 40.0 for s in doc["snr"]), doc["snr"]
    for line in ("griffin-lim-16", "checkpoint:ckpt", "onnx:model.onnx", "mean", "onnx:model.onnx vs checkpoint:ckpt"):
        assert line in result.output

    # one file with the perceptual metrics, to see them flow through the command
    result = runner.invoke(app, ["eval", "--onnx", str(onnx), str(data / "utt0.wav"), "--json", str(out), "--griffin-lim-iters", "8"])
    assert result.exit_code == 0, result.output
    check_schema(json.loads(out.read_text()), 1, ["onnx:model.onnx"], perceptual=True)


def test_eval_steps_take_betas_and_refuse_an_unknown_name_before_vocoding(tiny_bundle, short_dir, tmp_path):
    _, onnx = tiny_bundle
    wav = sorted(short_dir.glob("*.wav"))[0]
    out, audio = tmp_path / "eval.json", tmp_path / "audio"
    result = runner.invoke(app, ["eval", "--onnx", str(onnx), str(wav), "--steps", "slow", "--no-perceptual",
                                 "--json", str(out), "--save-audio", str(audio)])
    assert result.exit_code == 2
    assert _one_line(result) == "error: onnx:model.onnx: steps: unknown schedule 'slow'; known: fast, full, or a list of betas"
    assert not out.exists() and not audio.exists()
    result = runner.invoke(app, ["eval", "--onnx", str(onnx), str(wav), "--steps", "0.5", "--no-perceptual",
                                 "--json", str(out), "--griffin-lim-iters", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["steps"] == [0.5]


def test_eval_refuses_a_wav_at_another_rate(tiny_bundle, tmp_path):
    import soundfile as sf

    _, onnx = tiny_bundle
    bad = tmp_path / "bad.wav"
    sf.write(str(bad), np.zeros(16000, np.float32), 16000)
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["eval", "--onnx", str(onnx), str(bad), "--no-perceptual", "--json", str(out)])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "16000" in lines[0]
    assert not out.exists()


def test_eval_refuses_a_clip_too_short_for_pesq_before_vocoding_anything(tiny_bundle, short_dir, tmp_path):
    # Before: a 0.1 s clip passed the wav check, every system vocoded every file, then PESQ raised
    # BufferTooShortError and the run died with a traceback and no report.
    import soundfile as sf

    _, onnx = tiny_bundle
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(sorted(short_dir.glob("*.wav"))[0], data / "a.wav")
    audio, sr = sf.read(str(data / "a.wav"), dtype="float32")
    sf.write(str(data / "z.wav"), audio[sr // 2 : sr // 2 + sr // 10], sr, subtype="PCM_16")  # 0.1 s of speech
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["eval", "--onnx", str(onnx), str(data), "--json", str(out), "--griffin-lim-iters", "1"])
    assert _one_line(result) == (
        f"error: {data / 'z.wav'}: 0.100 s is too short for PESQ, which needs at least 0.25 s "
        "(or leave the perceptual metrics out: --no-perceptual)"
    )
    assert not out.exists()
    # without the perceptual metrics the same clip is fine
    result = runner.invoke(app, ["eval", "--onnx", str(onnx), str(data / "z.wav"), "--json", str(out),
                                 "--griffin-lim-iters", "1", "--no-perceptual"])
    assert result.exit_code == 0, result.output


def test_hidden_wavs_in_a_folder_are_not_recordings(tmp_path, speech_wav):
    # macOS copies carry "._x.wav" resource forks; a killed writer leaves ".x.wav.<random>.wav"
    for name in ("a.wav", "._a.wav", ".a.wav.0iuixgk4.wav"):
        shutil.copy(speech_wav, tmp_path / name)
    assert find_wavs([tmp_path]) == [tmp_path / "a.wav"]


def _one_line(result) -> str:
    assert result.exit_code != 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_eval_refuses_outputs_that_would_overwrite_a_recording(tiny_bundle, short_dir, tmp_path):
    _, onnx = tiny_bundle
    fast = ["--no-perceptual", "--griffin-lim-iters", "1"]
    data = tmp_path / "data"
    (data / "griffin-lim-1").mkdir(parents=True)
    victim, other = data / "victim.wav", data / "griffin-lim-1" / "other.wav"
    shutil.copy(short_dir / "utt0.wav", victim)
    shutil.copy(short_dir / "utt1.wav", other)
    before = {p: p.read_bytes() for p in (victim, other)}

    # --json on the recording itself, on a recording --limit leaves out, and through another spelling of its path
    for args in (
        [str(victim), "--json", str(victim)],
        [str(other), str(victim), "--limit", "1", "--json", str(victim)],
        [str(victim), "--json", str(data / "griffin-lim-1" / ".." / "victim.wav")],
    ):
        line = _one_line(runner.invoke(app, ["eval", "--onnx", str(onnx), *fast, *args]))
        assert line.startswith(f"error: {victim}: --json would overwrite this input recording"), line
    # --save-audio DIR writes DIR/<system>/<name>: here that is the input data/griffin-lim-1/other.wav
    line = _one_line(runner.invoke(app, ["eval", "--onnx", str(onnx), *fast, str(other), "--save-audio", str(data)]))
    assert line.startswith(f"error: {other}: --save-audio would overwrite this input recording"), line
    # --spectrograms DIR writes DIR/<stem>.png: a recording of that name is not overwritten either
    png = data / "victim.png"
    shutil.copy(victim, png)
    before[png] = png.read_bytes()
    line = _one_line(runner.invoke(app, ["eval", "--onnx", str(onnx), *fast, str(png), "--spectrograms", str(data)]))
    assert line.startswith(f"error: {png}: --spectrograms would overwrite this input recording"), line

    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.relative_to(data).as_posix() for p in data.rglob("*")) == ["griffin-lim-1", "griffin-lim-1/other.wav", "victim.png", "victim.wav"]


def test_eval_refuses_two_recordings_with_one_output_name(tiny_bundle, short_dir, tmp_path):
    _, onnx = tiny_bundle
    a, b = tmp_path / "a" / "x.wav", tmp_path / "b" / "x.wav"
    for path, source in ((a, "utt0.wav"), (b, "utt1.wav")):
        path.parent.mkdir()
        shutil.copy(short_dir / source, path)
    fast = ["eval", "--onnx", str(onnx), "--no-perceptual", "--griffin-lim-iters", "1", str(a), str(b)]
    out, figs, report = tmp_path / "out", tmp_path / "figs", tmp_path / "eval.json"

    line = _one_line(runner.invoke(app, [*fast, "--save-audio", str(out), "--json", str(report)]))
    assert line == f"error: {a} and {b} would both be written to {out / 'griffin-lim-1' / 'x.wav'}", line
    line = _one_line(runner.invoke(app, [*fast, "--spectrograms", str(figs), "--json", str(report)]))
    assert line == f"error: {a} and {b} would both be written to {figs / 'x.png'}", line
    # the report is an output too: not on top of a saved wav
    line = _one_line(runner.invoke(app, [*fast[:-1], "--save-audio", str(out), "--json", str(out / "griffin-lim-1" / "x.wav")]))
    assert line == f"error: the --json report and griffin-lim-1's output for {a} would both be written to {out / 'griffin-lim-1' / 'x.wav'}"
    assert not out.exists() and not figs.exists() and not report.exists()  # refused before any work

    # the library refuses the same, before writing anything
    with pytest.raises(ValueError, match="would both be written to"):
        evaluate([a, b], [], FeatureSpec(), griffin_lim_iterations=1, perceptual=False, progress=False, save_audio=out)
    assert not out.exists()
    # one recording listed twice is not a collision
    result = runner.invoke(app, [*fast[:-1], str(a), "--save-audio", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["griffin-lim-1", "onnx_model.onnx"]


def test_eval_output_under_a_file_is_refused_before_any_work(tiny_bundle, short_dir, tmp_path):
    # Before: the table was computed, then writing the report failed with a traceback.
    _, onnx = tiny_bundle
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    fast = ["eval", "--onnx", str(onnx), "--no-perceptual", "--griffin-lim-iters", "1", str(short_dir / "utt0.wav")]
    line = _one_line(runner.invoke(app, [*fast, "--json", str(blocker / "r.json")]))
    assert line == f"error: --json {blocker / 'r.json'}: {blocker} is a file, not a folder", line
    line = _one_line(runner.invoke(app, [*fast, "--save-audio", str(blocker / "a" / "b")]))
    assert line == f"error: --save-audio {blocker / 'a' / 'b'}: {blocker} is a file, not a folder", line
