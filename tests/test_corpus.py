"""`diffwave corpus`: deterministic espeak-ng corpus with a sentence-disjoint held-out split."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import soundfile as sf
from typer.testing import CliRunner

from diffwave.cli import app
from diffwave.corpus import ACCENTS, MANIFEST_NAME, VARIANTS, _key, generate_sentences, plan_corpus, read_manifest

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, ["corpus", *args])


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.wav"))}


def test_sentences_are_distinct_and_deterministic():
    a = generate_sentences(500, seed=0)
    assert a == generate_sentences(500, seed=0)
    assert len({_key(s) for s in a}) == 500
    assert generate_sentences(500, seed=1) != a
    assert any(s.endswith("?") for s in a) and any(s.endswith("!") for s in a) and any("," in s for s in a)


def test_heldout_sentences_never_appear_in_training():
    plan = plan_corpus(400, seed=5, heldout_fraction=0.1)
    heldout = {_key(u.text) for u in plan if u.split == "heldout"}
    train = {_key(u.text) for u in plan if u.split == "train"}
    assert len(heldout) == 40 and len(train) == 360
    assert not heldout & train
    # speakers vary: several accents, variants, speeds and pitches
    assert len({u.voice for u in plan}) > 20
    assert len({u.speed for u in plan}) > 20 and len({u.pitch for u in plan}) > 20
    assert {u.voice.split("+")[0] for u in plan} == set(ACCENTS)
    assert {("+" + u.voice.split("+")[1]) if "+" in u.voice else "" for u in plan} == set(VARIANTS)


def test_corpus_command_is_deterministic_with_manifest(tmp_path):
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for folder, seed in ((first, "7"), (second, "7"), (other, "8")):
        result = _run(str(folder), "--sentences", "8", "--seed", seed, "--heldout-fraction", "0.25", "--workers", "2")
        assert result.exit_code == 0, result.output
    assert _digest(first) == _digest(second)
    assert (first / MANIFEST_NAME).read_bytes() == (second / MANIFEST_NAME).read_bytes()
    assert _digest(first) != _digest(other)

    entries = read_manifest(first / MANIFEST_NAME)
    assert [e.split for e in entries].count("heldout") == 2 and len(entries) == 8
    for e in entries:
        info = sf.info(str(first / e.file))
        assert (info.samplerate, info.channels, info.frames) == (22050, 1, e.samples)
        assert e.samples > 22050 // 2  # a sentence is longer than half a second
        assert e.file.startswith(f"{e.split}/")
    line = json.loads((first / MANIFEST_NAME).read_text().splitlines()[0])
    assert set(line) == {"file", "split", "text", "voice", "speed", "pitch", "samples"}
    assert not list(first.rglob(".*"))  # no temp files left behind, nor the run's lock


def test_corpus_resumes_and_refuses_a_foreign_folder(tmp_path):
    out = tmp_path / "corpus"
    assert _run(str(out), "--sentences", "4", "--seed", "1", "--workers", "1").exit_code == 0
    before = _digest(out)
    victim = out / sorted(before)[0]
    victim.unlink()
    assert _run(str(out), "--sentences", "4", "--seed", "1").exit_code == 0
    assert _digest(out) == before  # the missing wav was rendered again, identically

    result = _run(str(out), "--sentences", "4", "--seed", "2")
    assert result.exit_code != 0
    message = result.output.strip().splitlines()
    assert len(message) == 1 and "not part of this corpus" in message[0] and str(out) in message[0]
    assert "--sentences, --seed and --heldout-fraction that made them" in message[0]
    assert _digest(out) == before


def test_a_rerun_speaks_again_wavs_damaged_since(tmp_path):
    # Before: an emptied wav stopped the rerun with a libsndfile traceback, and a truncated one was
    # kept and entered in the manifest with a few samples.
    out = tmp_path / "corpus"
    assert _run(str(out), "--sentences", "4", "--seed", "1", "--workers", "1").exit_code == 0
    before = _digest(out)
    emptied, truncated = (out / name for name in sorted(before)[:2])
    emptied.write_bytes(b"")
    truncated.write_bytes(truncated.read_bytes()[:100])
    result = _run(str(out), "--sentences", "4", "--seed", "1", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert _digest(out) == before  # both spoken again, byte for byte
    samples = {e.file: e.samples for e in read_manifest(out / "manifest.jsonl")}
    assert all(n == sf.info(str(out / f)).frames > 1000 for f, n in samples.items())


def test_a_killed_runs_temporaries_do_not_block_the_resume(tmp_path):
    # SIGKILL (or a power cut) leaves espeak-ng's half-written temporaries beside the wavs. They
    # used to count as foreign wavs, so the rerun that should resume refused the folder.
    out = tmp_path / "corpus"
    assert _run(str(out), "--sentences", "4", "--seed", "1", "--workers", "1").exit_code == 0
    before = _digest(out)
    victim = out / sorted(before)[0]
    stale = victim.with_name(f".{victim.name}.k7f0b85u.wav")
    stale.write_bytes(victim.read_bytes()[:1000])  # what a killed render leaves
    victim.unlink()
    keep = out / "train" / ".notes.wav"  # a hidden file that is not ours stays
    keep.write_bytes(b"x")
    result = _run(str(out), "--sentences", "4", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert not stale.exists() and keep.exists()
    keep.unlink()
    assert _digest(out) == before  # the half-spoken wav was rendered again, identically


def test_too_few_sentences_for_a_heldout_split(tmp_path):
    result = _run(str(tmp_path / "x"), "--sentences", "2", "--heldout-fraction", "0.9")
    assert result.exit_code != 0 and "nothing for training" in result.output


def test_wavs_are_the_bytes_espeak_ng_writes_itself(tmp_path):
    """The wav comes through espeak-ng's --stdout; it must equal what its -w writes, header included."""
    import shutil
    import subprocess

    out = tmp_path / "corpus"
    assert _run(str(out), "--sentences", "3", "--seed", "4", "--workers", "1").exit_code == 0
    for entry in read_manifest(out / MANIFEST_NAME):
        direct = tmp_path / "direct.wav"
        subprocess.run([shutil.which("espeak-ng"), "-v", entry.voice, "-s", str(entry.speed), "-p", str(entry.pitch),
                        "-w", str(direct), entry.text], check=True, capture_output=True)
        assert (out / entry.file).read_bytes() == direct.read_bytes(), entry.file


def test_a_full_disk_stops_the_run_and_keeps_no_short_wav(tmp_path, monkeypatch):
    """espeak-ng's -w ignores write errors: on a full disk it wrote a shorter wav with a consistent
    header and exit 0, which was kept under its final name for good. Now the wav is written here, so
    the disk's error reaches us. (The disk is made full by failing the second wav's flush with
    ENOSPC: a full filesystem cannot be made here without privileges, and a file-size limit kills
    espeak-ng itself, which uses shared memory.)"""
    import errno
    import os

    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    out = tmp_path / "corpus"
    monkeypatch.setattr(os, "fsync", fsync)
    result = _run(str(out), "--sentences", "3", "--seed", "4", "--workers", "1")
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == "error: No space left on device", result.output
    clean = tmp_path / "clean"
    assert _run(str(clean), "--sentences", "3", "--seed", "4", "--workers", "1").exit_code == 0
    kept = _digest(out)
    assert len(kept) == 2 and all(digest == _digest(clean)[name] for name, digest in kept.items())  # whole ones only
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary left
    assert not (out / MANIFEST_NAME).exists()
    assert _run(str(out), "--sentences", "3", "--seed", "4", "--workers", "1").exit_code == 0  # with room again
    assert _digest(out) == _digest(clean)
    assert (out / MANIFEST_NAME).read_bytes() == (clean / MANIFEST_NAME).read_bytes()


def test_a_second_run_on_the_same_folder_is_refused_while_the_first_writes(tmp_path):
    """Each run removes the temporaries a killed run left, by name: a second run on the same folder
    deleted the first one's live temporaries under it (a traceback from libsndfile, 2 of 3 tries)."""
    import subprocess
    import sys

    out = tmp_path / "corpus"
    first = subprocess.Popen([sys.executable, "-m", "diffwave", "corpus", str(out), "--sentences", "40", "--workers", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import time

        deadline = time.monotonic() + 60
        while not list(out.glob("*/*.wav")) and time.monotonic() < deadline:  # the first is speaking
            time.sleep(0.05)
        second = _run(str(out), "--sentences", "40", "--workers", "1")
        assert second.exit_code == 1
        assert second.output.strip().splitlines()[-1] == (
            f"error: {out}: another diffwave corpus is writing this folder; wait for it to finish")
    finally:
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    clean = tmp_path / "clean"
    assert _run(str(clean), "--sentences", "40", "--workers", "1").exit_code == 0
    assert _digest(out) == _digest(clean)
