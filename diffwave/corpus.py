"""A speech corpus that needs no download: espeak-ng reads sentences this module writes.

Why: a new user has no dataset and no internet, yet training and evaluating a vocoder
needs many seconds of varied speech. espeak-ng is packaged by every Linux distribution
and its output is deterministic, so ``(seed, sentences)`` fully determines the corpus,
byte for byte, on any machine with the same espeak-ng version.

Text comes from a small grammar whose word lists are written here (plain English words,
no third-party text). Variety comes from the grammar (statements, questions, numbers,
commas, names), and from the speaker: several espeak-ng accents and voice variants,
speeds and pitches drawn per utterance.

The held-out split is made of *sentences*, not renderings: a held-out text is never
spoken in the training split, by any voice.

Layout of ``OUT_DIR``::

    train/NNNNN-HASH.wav      22 050 Hz mono 16-bit
    heldout/NNNNN-HASH.wav
    manifest.jsonl            one JSON object per wav: file, split, text, voice, speed, pitch, samples

``HASH`` is a digest of everything that determines the wav (text, voice, speed, pitch),
so a file that exists under its name is the right one: an interrupted run resumes by
skipping it, and a folder holding wavs of another corpus is refused rather than mixed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import soundfile as sf

from runtime.bundle import atomic_output, stale_temporaries, write_text_atomic
from runtime.errors import first_line

from .folder_lock import FolderBusy, folder_lock

SAMPLE_RATE = 22050
SPLITS = ("train", "heldout")
MANIFEST_NAME = "manifest.jsonl"

#: espeak-ng's own (non-MBROLA) English voices: accents of the same synthesiser.
ACCENTS: tuple[str, ...] = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc")
#: Voice variants that change formants and pitch range ("" = the accent's default voice).
#: Whispering, croaking and robotic variants are left out: they are not speech a vocoder serves.
VARIANTS: tuple[str, ...] = ("", "+f1", "+f2", "+f3", "+f4", "+m1", "+m2", "+m3", "+m4", "+m5")
SPEED_RANGE = (135, 195)  #: words per minute (espeak-ng default 175)
PITCH_RANGE = (30, 70)  #: espeak-ng pitch 0…99 (default 50)

_WAV_NAME = re.compile(r"^\d{5}-[0-9a-f]{10}\.wav$")


class CorpusError(RuntimeError):
    """The corpus cannot be made (message is one line)."""


# --------------------------------------------------------------------------------------
# Text: a small grammar over word lists written for this module.
# --------------------------------------------------------------------------------------
NAMES = (
    "Alice", "Arthur", "Beatrice", "Charles", "Clara", "Daniel", "Edith", "Frank", "George", "Grace",
    "Harriet", "Henry", "Irene", "Jack", "Julia", "Leonard", "Lucy", "Martha", "Oliver", "Peter",
    "Rose", "Samuel", "Thomas", "Victor", "Walter", "Winifred",
)
ADJECTIVES = (
    "old", "young", "quiet", "bright", "heavy", "narrow", "gentle", "crooked", "golden", "silver",
    "wooden", "careful", "hungry", "little", "enormous", "patient", "rusty", "early", "distant", "small",
    "curious", "cheerful", "cold", "warm", "broken", "ancient", "tired", "clever", "muddy", "yellow",
)
NOUNS = (
    "lantern", "farmer", "window", "river", "basket", "sailor", "teacher", "horse", "kettle", "letter",
    "garden", "bridge", "doctor", "clock", "carpet", "village", "merchant", "violin", "blanket", "captain",
    "engine", "candle", "pencil", "orchard", "ladder", "wagon", "soldier", "painter", "mirror", "shepherd",
    "notebook", "bicycle", "compass", "tailor", "umbrella", "telescope", "chimney", "barrel", "whistle", "printer",
)
PLACES = (
    "market", "harbour", "station", "library", "meadow", "kitchen", "mountain", "cellar", "church", "valley",
    "forest", "bakery", "school", "hospital", "island", "square", "workshop", "castle", "museum", "lighthouse",
)
#: (base, past) pairs of transitive verbs.
VERBS = (
    ("carry", "carried"), ("paint", "painted"), ("mend", "mended"), ("find", "found"), ("sell", "sold"),
    ("wash", "washed"), ("bring", "brought"), ("lift", "lifted"), ("hide", "hid"), ("borrow", "borrowed"),
    ("follow", "followed"), ("watch", "watched"), ("open", "opened"), ("polish", "polished"), ("pull", "pulled"),
    ("count", "counted"), ("draw", "drew"), ("keep", "kept"), ("measure", "measured"), ("visit", "visited"),
    ("remember", "remembered"), ("describe", "described"), ("deliver", "delivered"), ("wrap", "wrapped"),
)
#: (base, past) pairs of intransitive verbs.
INTRANSITIVE = (
    ("sleep", "slept"), ("wait", "waited"), ("sing", "sang"), ("laugh", "laughed"), ("arrive", "arrived"),
    ("listen", "listened"), ("wander", "wandered"), ("rest", "rested"), ("shiver", "shivered"), ("whisper", "whispered"),
)
PREPOSITIONS = ("near", "behind", "inside", "beyond", "under", "beside", "across", "outside", "above", "towards")
ADVERBS = ("slowly", "quietly", "suddenly", "carefully", "happily", "rarely", "gladly", "early", "often", "finally")
TIMES = (
    "in the morning", "after supper", "before dawn", "on Sunday", "last winter", "every evening", "at noon",
    "on the third of May", "in eighteen ninety four", "yesterday", "next Tuesday", "during the storm",
)
NUMBERS = ("two", "three", "four", "five", "seven", "nine", "eleven", "twelve", "twenty", "forty two", "a hundred", "several")
CLOCK = ("half past seven", "a quarter to nine", "ten o'clock", "noon", "midnight", "five past three", "six thirty")
EXCLAIM = ("What a", "Such a", "Oh, what a")


def _plural(noun: str) -> str:
    if noun.endswith(("s", "sh", "ch", "x")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _sentence(rng: random.Random) -> str:
    """One sentence from one of several templates (statements, questions, exclamations)."""
    c = rng.choice
    adj, noun, place, name = c(ADJECTIVES), c(NOUNS), c(PLACES), c(NAMES)
    (verb, verbed), (rest, rested) = c(VERBS), c(INTRANSITIVE)
    template = rng.randrange(10)
    if template == 0:
        s = f"The {adj} {noun} {rested} {c(PREPOSITIONS)} the {place}."
    elif template == 1:
        s = f"{name} {verbed} {c(NUMBERS)} {c(ADJECTIVES)} {_plural(noun)} {c(TIMES)}."
    elif template == 2:
        s = f"Did {name} {verb} the {adj} {noun} {c(PREPOSITIONS)} the {place}?"
    elif template == 3:
        s = f"{c(ADVERBS).capitalize()}, the {noun} {verbed} the {c(NOUNS)}, and {c(NAMES)} {rested}."
    elif template == 4:
        s = f"Please {verb} the {adj} {noun} before {c(CLOCK)}."
    elif template == 5:
        s = f"{c(EXCLAIM)} {adj} {noun} {name} {verbed} at the {place}!"
    elif template == 6:
        s = f"Why would {_article(adj)} {adj} {noun} {rest} {c(PREPOSITIONS)} the {place} {c(TIMES)}?"
    elif template == 7:
        s = f"When {name} {rested}, the {noun} {verbed} {c(NUMBERS)} {_plural(c(NOUNS))} {c(ADVERBS)}."
    elif template == 8:
        s = f"We met {_article(adj)} {adj} {noun} at the {place} at {c(CLOCK)}, and it {rested} {c(ADVERBS)}."
    else:
        first, second = rng.sample(ADJECTIVES, 2)
        s = f"{name} said that the {noun} {c(PREPOSITIONS)} the {place} was {first} and {second}."
    return s[0].upper() + s[1:]


def _key(text: str) -> str:
    """What makes two sentences 'the same' for the split: words, ignoring case and punctuation."""
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def generate_sentences(count: int, seed: int) -> list[str]:
    """``count`` distinct sentences, the same list for the same ``(count, seed)`` on any machine."""
    if count < 1:
        raise CorpusError(f"sentences must be >= 1, got {count}")
    rng = random.Random(f"diffwave-corpus-text:{seed}")  # str seeds hash with SHA-512: stable across runs
    seen: set[str] = set()
    out: list[str] = []
    attempts = 0
    while len(out) < count:
        attempts += 1
        if attempts > 50 * count + 1000:
            raise CorpusError(f"could not draw {count} distinct sentences from the grammar (got {len(out)})")
        text = _sentence(rng)
        key = _key(text)
        if key not in seen:
            seen.add(key)
            out.append(text)
    return out


# --------------------------------------------------------------------------------------
# The plan: which sentence is spoken by whom, into which file.
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Utterance:
    """One wav of the corpus and everything that determines its samples."""

    index: int
    split: str  #: "train" or "heldout"
    text: str
    voice: str  #: espeak-ng voice, e.g. "en-us+f3"
    speed: int  #: words per minute
    pitch: int  #: 0…99

    @property
    def digest(self) -> str:
        blob = json.dumps([self.text, self.voice, self.speed, self.pitch, SAMPLE_RATE])
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    @property
    def file(self) -> str:
        """Path relative to the corpus folder."""
        return f"{self.split}/{self.index:05d}-{self.digest}.wav"


@dataclass(frozen=True)
class ManifestEntry:
    """One line of ``manifest.jsonl``."""

    file: str
    split: str
    text: str
    voice: str
    speed: int
    pitch: int
    samples: int


def plan_corpus(sentences: int, seed: int, heldout_fraction: float = 0.05) -> list[Utterance]:
    """Assign each distinct sentence to a split and a speaker, deterministically.

    The held-out split is ``max(1, round(sentences × heldout_fraction))`` sentences (none when
    the fraction is 0), chosen at random; the rest are training sentences.
    """
    if not 0.0 <= heldout_fraction < 1.0:
        raise CorpusError(f"heldout fraction must be in [0, 1), got {heldout_fraction}")
    texts = generate_sentences(sentences, seed)
    n_heldout = 0 if heldout_fraction == 0 else max(1, round(sentences * heldout_fraction))
    if n_heldout >= sentences:
        raise CorpusError(f"{sentences} sentence(s) leave nothing for training after {n_heldout} held out")
    rng = random.Random(f"diffwave-corpus-speaker:{seed}")
    heldout = set(rng.sample(range(sentences), n_heldout))
    plan = []
    for i, text in enumerate(texts):
        voice = rng.choice(ACCENTS) + rng.choice(VARIANTS)
        speed = rng.randint(*SPEED_RANGE)
        pitch = rng.randint(*PITCH_RANGE)
        plan.append(Utterance(i, "heldout" if i in heldout else "train", text, voice, speed, pitch))
    return plan


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------
def espeak_executable() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise CorpusError("espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng)")
    return exe


def render(utt: Utterance, out_dir: Path, exe: str, recorded_samples: Optional[int] = None) -> ManifestEntry:
    """Speak one utterance into its wav (atomically); an existing wav of the same name is kept if it is whole.

    Whole means readable, and as long as the manifest of an earlier run says (``recorded_samples``):
    our writes are atomic, so a damaged wav was damaged from outside (a full disk, a copy cut short),
    and speaking it again gives the same bytes.
    """
    path = out_dir / utt.file
    if path.exists() and not _whole(path, recorded_samples):
        path.unlink()
    info = None
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path, suffix=".wav") as tmp:
            # The wav comes through a pipe and is written here: espeak-ng's own -w ignores write
            # errors, so a full disk gave a shorter wav with a consistent header and exit 0, which
            # nothing could tell from a whole one. The bytes are those -w writes.
            cmd = [exe, "-v", utt.voice, "-s", str(utt.speed), "-p", str(utt.pitch), "--stdout", utt.text]
            # Its own session: a terminal's Ctrl-C goes to this process alone, which stops the queue and
            # lets the few running voices finish, instead of killing them into a misleading failure.
            proc = subprocess.run(cmd, capture_output=True, start_new_session=True)
            if proc.returncode != 0:
                detail = proc.stderr.decode(errors="replace").strip().splitlines()
                raise CorpusError(f"espeak-ng failed on {utt.file} (voice {utt.voice}): {detail[0] if detail else f'exit {proc.returncode}'}")
            with open(tmp, "wb") as handle:
                handle.write(_wav_from_stream(proc.stdout, utt.file))
                handle.flush()
                os.fsync(handle.fileno())  # a full disk fails here, not later in a file that looks whole
            info = _check_wav(tmp, utt.file)  # the file renamed into place: read once
    info = info or _check_wav(path, utt.file)
    return ManifestEntry(utt.file, utt.split, utt.text, utt.voice, utt.speed, utt.pitch, info.frames)


def _wav_from_stream(stream: bytes, name: str) -> bytes:
    """espeak-ng's ``--stdout`` wav with its chunk sizes filled in (a pipe cannot seek back to write
    them, so it leaves placeholders there): the canonical 44-byte header, then 16-bit samples."""
    header, data = stream[:44], stream[44:]
    if len(header) < 44 or header[:4] != b"RIFF" or header[8:16] != b"WAVEfmt " or header[36:40] != b"data" or len(data) % 2:
        raise CorpusError(f"{name}: espeak-ng wrote {len(stream)} bytes that are not a 16-bit wav stream")
    return b"RIFF" + (36 + len(data)).to_bytes(4, "little") + header[8:40] + len(data).to_bytes(4, "little") + data


def _whole(path: Path, recorded_samples: Optional[int]) -> bool:
    try:
        frames = sf.info(str(path)).frames
    except Exception:  # libsndfile refuses empty and foreign files
        return False
    return frames > 0 and (recorded_samples is None or frames == recorded_samples)


def _check_wav(path: Path, name: str):
    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile's errors are not OSErrors: one line here, not a traceback
        raise CorpusError(f"{name}: unreadable wav ({first_line(exc)})") from None
    if info.samplerate != SAMPLE_RATE or info.channels != 1 or info.frames == 0:
        raise CorpusError(
            f"{name}: espeak-ng wrote {info.channels} channel(s) at {info.samplerate} Hz with {info.frames} samples, "
            f"expected mono {SAMPLE_RATE} Hz speech"
        )
    return info


def _foreign_wavs(out_dir: Path, plan: Sequence[Utterance]) -> list[Path]:
    expected = {out_dir / u.file for u in plan}
    found = [p for split in SPLITS for p in sorted((out_dir / split).glob("*.wav")) if not p.name.startswith(".")]
    return [p for p in found if p not in expected]


def _remove_stale_temporaries(out_dir: Path, plan: Sequence[Utterance]) -> None:
    """Half-spoken wavs of a killed run: their wavs are rendered again."""
    planned = {Path(u.file).name for u in plan}
    for split in SPLITS:
        for name, stale in stale_temporaries(out_dir / split, suffix=".wav"):
            if name in planned:
                stale.unlink(missing_ok=True)


def make_corpus(
    out_dir: str | os.PathLike,
    sentences: int = 3000,
    seed: int = 0,
    heldout_fraction: float = 0.05,
    workers: Optional[int] = None,
    progress: bool = True,
) -> list[ManifestEntry]:
    """Render the corpus into ``out_dir`` and write its manifest last (atomically).

    Wavs already present under their planned names are kept (resume). A folder whose
    ``train/`` or ``heldout/`` holds other wavs is refused: mixing two corpora would
    silently put held-out sentences into training.
    """
    out_dir = Path(out_dir)
    exe = espeak_executable()
    plan = plan_corpus(sentences, seed, heldout_fraction)
    try:
        with folder_lock(out_dir, "diffwave corpus", wait=False):  # a second run would delete the first one's temporaries
            return _render_all(out_dir, plan, exe, workers, progress)
    except FolderBusy as exc:
        raise CorpusError(str(exc)) from None


def _render_all(out_dir: Path, plan: Sequence[Utterance], exe: str, workers: Optional[int], progress: bool) -> list[ManifestEntry]:
    """Every planned wav (kept when already whole, spoken otherwise), then the manifest."""
    foreign = _foreign_wavs(out_dir, plan)
    if foreign:
        raise CorpusError(
            f"{out_dir}: {len(foreign)} wav file(s) that are not part of this corpus (e.g. {foreign[0].relative_to(out_dir)}); "
            "use an empty folder, or the --sentences, --seed and --heldout-fraction that made them (another count plans "
            "different files, so a corpus cannot be extended in place)"
        )
    _remove_stale_temporaries(out_dir, plan)
    workers = max(1, workers or os.cpu_count() or 1)
    entries: list[Optional[ManifestEntry]] = [None] * len(plan)
    from tqdm import tqdm

    with ThreadPoolExecutor(max_workers=workers) as pool, tqdm(
        total=len(plan), desc="espeak-ng", unit="wav", disable=not progress
    ) as bar:
        recorded = _recorded_samples(out_dir / MANIFEST_NAME)
        futures = {pool.submit(render, utt, out_dir, exe, recorded.get(utt.file)): utt.index for utt in plan}
        try:
            for fut in as_completed(futures):
                entries[futures[fut]] = fut.result()
                bar.update(1)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    done = [e for e in entries if e is not None]
    write_manifest(out_dir / MANIFEST_NAME, done)
    return done


def _recorded_samples(path: Path) -> dict[str, int]:
    """file -> samples from an earlier run's manifest (none when there is none, or it is unreadable)."""
    try:
        return {e.file: e.samples for e in read_manifest(path)} if path.is_file() else {}
    except (CorpusError, OSError, UnicodeDecodeError):
        return {}


def write_manifest(path: Path, entries: Iterable[ManifestEntry]) -> None:
    lines = [json.dumps(asdict(e), ensure_ascii=False) for e in entries]
    write_text_atomic(path, "\n".join(lines) + "\n")


def read_manifest(path: str | os.PathLike) -> list[ManifestEntry]:
    path = Path(path)
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(ManifestEntry(**json.loads(line)))
        except (json.JSONDecodeError, TypeError) as exc:
            raise CorpusError(f"{path}:{n}: malformed manifest line ({exc})") from None
    return out


def summarize(entries: Sequence[ManifestEntry]) -> dict[str, tuple[int, float]]:
    """split -> (wav count, hours of audio)."""
    out = {}
    for split in SPLITS:
        rows = [e for e in entries if e.split == split]
        out[split] = (len(rows), sum(e.samples for e in rows) / SAMPLE_RATE / 3600.0)
    return out

