"""Ctrl-C and SIGTERM: `diffwave train` stops between steps (one line, a consistent checkpoint; diffwave/interrupts.py),
`diffwave preprocess` and `diffwave corpus` stop promptly and keep only whole files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from diffwave import interrupts
from diffwave.checkpoint import load_checkpoint
from helpers import TINY_PARAMS

PROBE = Path(__file__).with_name("signal_probe.py")
TERMINATED = "error: terminated (the last checkpoint is in place; rerun to resume)"
INTERRUPTED = "error: interrupted (the last checkpoint is in place; rerun to resume)"


#: ema_decay 0.5: the weight average moves a lot on every step, so a skipped update shows
PARAMS = {**TINY_PARAMS, "ema_decay": 0.5}


def _train(tmp_path: Path, model_dir: Path, data_dir: Path, probe: str | None, *extra: str) -> subprocess.CompletedProcess:
    config_file = tmp_path / "tiny.json"
    config_file.write_text(json.dumps(PARAMS))
    args = ["train", str(model_dir), str(data_dir), "--config", str(config_file), "--device", "cpu", "--no-progress",
            "--checkpoint-every", "100000", "--workers", "1", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if probe is None:
        cmd = [sys.executable, "-m", "diffwave", *args]
    else:
        cmd, env["PROBE"] = [sys.executable, str(PROBE), *args], probe
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def test_sigterm_while_a_worker_hands_over_a_batch_is_one_line(tmp_path, preprocessed_dir):
    # Each batch is two tensors (audio, spectrogram), so the 5th handshake belongs to batch 3.
    # Raised on the spot, the exception closed the socket mid-handshake and the worker printed
    # a ConnectionResetError traceback after our line (seen in CI).
    run = tmp_path / "run"
    proc = _train(tmp_path, run, preprocessed_dir, "handover:5:SIGTERM")
    assert proc.returncode == 143, proc.stderr
    assert proc.stderr.strip().splitlines() == ["training data: 3 records", TERMINATED]  # no traceback after our line
    assert load_checkpoint(run).step == 3  # the step whose batch was arriving finished, then training stopped


def test_ctrl_c_after_the_update_saves_the_finished_step(tmp_path, preprocessed_dir):
    # Ctrl-C after step 3's optimizer update, before its weight average and step counter.
    run, clean = tmp_path / "run", tmp_path / "clean"
    proc = _train(tmp_path, run, preprocessed_dir, "update:3:SIGINT")
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == INTERRUPTED
    assert _train(tmp_path, clean, preprocessed_dir, None, "--max-steps", "3").returncode == 0
    stopped, reference = load_checkpoint(run), load_checkpoint(clean)
    assert stopped.step == reference.step == 3
    assert stopped.ema is not None and reference.ema is not None
    for name, mine, theirs in (("weights", stopped.model, reference.model), ("average", stopped.ema, reference.ema)):
        assert mine.keys() == theirs.keys()
        for key, value in theirs.items():
            assert torch.equal(mine[key], value), f"{name}: {key}"


def test_a_second_ctrl_c_stops_at_once_and_saves_no_half_step(tmp_path, preprocessed_dir):
    run = tmp_path / "run"
    proc = _train(tmp_path, run, preprocessed_dir, "update:3:SIGINT,SIGINT")
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == INTERRUPTED
    assert not (run / "weights.pt").exists()  # no checkpoint was due, and step 3 was half done


#: a terminal's Ctrl-C, and a job scheduler's SIGTERM to the whole job: exit status and first word
GROUP_SIGNALS = [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")]


@pytest.mark.parametrize("name, code, word", GROUP_SIGNALS)
def test_a_stop_signal_ends_preprocess_promptly_with_whole_files(tmp_path, speech_dir, name, code, word):
    # 120 wavs on two workers; the signal goes to the whole process group when three are back.
    # Before, leaving the pool waited for every queued file (all 120 were written after Ctrl-C)
    # and SIGTERM left no message.
    folder = tmp_path / "wavs"
    folder.mkdir()
    sources = sorted(speech_dir.glob("*.wav"))
    for i in range(120):
        (folder / f"{i:03d}.wav").write_bytes(sources[i % len(sources)].read_bytes())
    cmd = [sys.executable, str(PROBE), "preprocess", str(folder), "--workers", "2", "--no-progress"]
    env = {**os.environ, "PROBE": f"completed:3:{name}"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, start_new_session=True)
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {word} (the spectrograms written so far are complete; rerun to do the rest)"
    ]
    written = sorted(folder.glob("*.spec.npy"))
    assert 3 <= len(written) <= 20, len(written)  # the three, those in flight and a few queued ones
    for spec in written:
        assert np.load(spec).shape[0] == 80  # whole files only
    assert not (folder / ".features.json").exists()  # a stopped run claims nothing about the folder
    # SIGTERM kills the workers too (their default), possibly mid-write: the rerun clears that up.
    rerun = subprocess.run([sys.executable, "-m", "diffwave", "preprocess", str(folder), "--workers", "2", "--no-progress"],
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert len(list(folder.glob("*.spec.npy"))) == 120
    # no temporaries; the record of the settings, now that every spectrogram there is made with them
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == [".features.json"]


@pytest.mark.parametrize("name, code, word", GROUP_SIGNALS)
def test_a_stop_signal_ends_the_corpus_promptly_with_whole_files(tmp_path, name, code, word):
    # The signal goes to the whole group when 5 of 200 sentences are spoken. The voices in flight
    # run in their own session, so they finish instead of dying into an "espeak-ng failed" error.
    out = tmp_path / "corpus"
    args = ["corpus", str(out), "--sentences", "200", "--seed", "1", "--workers", "2"]
    env = {**os.environ, "PROBE": f"completed:5:{name}"}
    proc = subprocess.run([sys.executable, str(PROBE), *args], capture_output=True, text=True, timeout=300, env=env,
                          start_new_session=True)
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {word} (the wavs written so far are complete; rerun with the same arguments to do the rest)"
    )
    wavs = list(out.rglob("*.wav"))
    assert 5 <= len(wavs) <= 20, len(wavs)
    for wav in wavs:
        assert sf.info(str(wav)).frames > 0  # whole files only
    assert [p for p in out.rglob(".*")] == []  # no temporaries
    assert not (out / "manifest.jsonl").exists()  # the manifest is written only for a whole corpus
    rerun = subprocess.run([sys.executable, "-m", "diffwave", *args], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert len(list(out.rglob("*.wav"))) == 200


# -- the mechanism, in this process ---------------------------------------------------------

def _signal_self(signum: int = signal.SIGTERM) -> None:
    os.kill(os.getpid(), signum)


def test_outside_a_deferred_block_a_signal_raises_at_once():
    with interrupts.stop_signals_raise():
        with pytest.raises(interrupts.Terminated):
            _signal_self()
            pytest.fail("the signal did not raise")
        assert not interrupts.interrupted_mid_step()


def test_inside_a_deferred_block_the_signal_waits_for_its_end():
    done = []
    with interrupts.stop_signals_raise():
        with pytest.raises(KeyboardInterrupt) as caught:
            with interrupts.deferred():
                _signal_self(signal.SIGINT)
                done.append("rest of the block")
        assert done == ["rest of the block"] and type(caught.value) is KeyboardInterrupt
        assert not interrupts.interrupted_mid_step()
        with interrupts.deferred():  # the stop was delivered once, not again
            done.append("next block")
    assert done == ["rest of the block", "next block"]


def test_a_second_signal_breaks_into_the_block():
    with interrupts.stop_signals_raise():
        with pytest.raises(interrupts.Terminated):
            with interrupts.deferred():
                _signal_self(signal.SIGINT)
                _signal_self(signal.SIGTERM)
                pytest.fail("the second signal did not raise")
        assert interrupts.interrupted_mid_step()


def test_a_failure_while_a_stop_is_pending_reports_the_stop():
    # e.g. a DataLoader worker got the scheduler's SIGTERM too and exited under the fetch
    with interrupts.stop_signals_raise():
        with pytest.raises(interrupts.Terminated):
            with interrupts.deferred():
                _signal_self()
                raise RuntimeError("DataLoader worker exited unexpectedly")


def test_handlers_are_restored_and_deferral_is_inert_without_them():
    before = {s: signal.getsignal(s) for s in interrupts.STOP_SIGNALS}
    with interrupts.stop_signals_raise():
        assert all(signal.getsignal(s) is not before[s] for s in interrupts.STOP_SIGNALS)
    assert {s: signal.getsignal(s) for s in interrupts.STOP_SIGNALS} == before
    with pytest.raises(ValueError, match="passes through"):
        with interrupts.deferred():
            raise ValueError("passes through")


def test_an_ignored_signal_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupts.stop_signals_raise():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            _signal_self(signal.SIGINT)  # nothing happens
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_processes_started_while_sigint_is_ignored_ignore_it_from_the_start():
    probe = [sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"]
    before = signal.getsignal(signal.SIGINT)
    with interrupts.sigint_ignored():
        inside = subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip()
    outside = subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip()
    assert (inside, outside) == ("True", "False")
    assert signal.getsignal(signal.SIGINT) is before
