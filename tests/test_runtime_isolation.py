"""``runtime`` is what a TTS service embeds: it must work with neither ``diffwave`` nor ``export``.

Each check runs in a fresh interpreter where those packages (and, for the ONNX path, torch)
are made unimportable by ``sys.modules[name] = None``, so any import of them raises.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from helpers import random_model, tiny_config
from runtime_helpers import write_onnx_bundle

BLOCK = "import sys\nfor name in {names!r}:\n    sys.modules[name] = None\n"

ONNX_VOCODE = """
import json
import numpy as np
import runtime
from runtime import Vocoder
voc = Vocoder.load({path!r}, device="cpu")
mel = np.random.default_rng(0).uniform(0, 1, (80, 12)).astype(np.float32)
audio = voc(mel, seed=2)
banned = sorted(m for m in ("diffwave", "export", "torch") if sys.modules.get(m) is not None)
print(json.dumps({{"shape": list(audio.shape), "sum": float(audio.sum()), "loaded": banned}}))
"""


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_onnx_vocoding_needs_neither_diffwave_export_nor_torch(tmp_path):
    path = write_onnx_bundle(tmp_path, random_model(tiny_config(), seed=2))
    code = BLOCK.format(names=["diffwave", "export", "torch"]) + ONNX_VOCODE.format(path=str(path))
    result = run(code)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["shape"] == [1, 12 * 256] and report["loaded"] == []
    # Same numbers as in a process where everything is importable.
    from runtime import Vocoder

    audio = Vocoder.load(path, device="cpu")(np.random.default_rng(0).uniform(0, 1, (80, 12)).astype(np.float32), seed=2)
    assert abs(float(audio.sum()) - report["sum"]) < 1e-3


def test_every_runtime_module_imports_without_diffwave_and_export():
    code = BLOCK.format(names=["diffwave", "export"]) + (
        "import pkgutil, importlib, runtime, runtime.backends\n"
        "for pkg in (runtime, runtime.backends):\n"
        "    for info in pkgutil.iter_modules(pkg.__path__):\n"
        "        importlib.import_module(pkg.__name__ + '.' + info.name)\n"
        "print('ok')\n"
    )
    result = run(code)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
