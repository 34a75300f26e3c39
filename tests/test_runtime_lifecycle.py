"""One Vocoder serving a long-lived process: memory stays bounded, threads cannot mix calls, close frees.

A TTS service keeps one vocoder for hours and sends it whatever batch sizes and lengths arrive, from
whatever threads it runs. These tests send it such a mix through ONNX Runtime (CPU) and check the
audio against fresh vocoders that saw one request each.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from helpers import random_model, tiny_config
from runtime import Vocoder, VocoderError
from runtime_helpers import random_mel, write_onnx_bundle

#: (batch, frames) of the requests, in the order a service might see them; the last is the largest
REQUESTS = [(1, 20), (3, 9), (2, 31), (5, 12), (4, 17), (1, 40), (6, 6), (7, 22), (8, 25)]


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory) -> Path:
    return write_onnx_bundle(tmp_path_factory.mktemp("bundle"), random_model(tiny_config(), seed=7))


def request(batch: int, frames: int) -> np.ndarray:
    return random_mel(80, frames, batch=batch, seed=batch * 100 + frames)


def test_memory_is_bounded_by_the_largest_request_and_every_result_is_exact(onnx_path):
    served = Vocoder.load(onnx_path, device="cpu")
    outputs = [served(request(b, f), seed=b + f) for b, f in REQUESTS]
    # A vocoder that only ever saw the largest request holds that request's buffers.
    largest = Vocoder.load(onnx_path, device="cpu")
    largest(request(*REQUESTS[-1]), seed=0)
    # Power-of-two buckets per buffer name: at most twice the largest request's buffers. Keyed on
    # shape, the nine shapes above held 3.9x (one buffer set per batch size and length).
    assert served.backend.pool.nbytes <= 2 * largest.backend.pool.nbytes
    # Shared buffers must not leak one request into another: each result is what a fresh vocoder gives.
    for (b, f), got in zip(REQUESTS, outputs):
        with Vocoder.load(onnx_path, device="cpu") as fresh:
            np.testing.assert_array_equal(got, fresh(request(b, f), seed=b + f), err_msg=f"batch {b}, {f} frames")
    # and a shape seen before gives the same audio again after the others used the memory.
    np.testing.assert_array_equal(served(request(*REQUESTS[0]), seed=21), outputs[0])


def test_calls_from_several_threads_wait_for_each_other(onnx_path):
    shared = Vocoder.load(onnx_path, device="cpu")
    jobs = [(b, f, seed) for seed, (b, f) in enumerate(REQUESTS[:6])] * 2
    expected = {job: shared(request(job[0], job[1]), seed=job[2]) for job in jobs}
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker(index: int) -> None:
        try:
            start.wait()
            for k in range(index, len(jobs), 4):
                b, f, seed = jobs[k]
                results[k] = shared(request(b, f), seed=seed)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for k, job in enumerate(jobs):
        np.testing.assert_array_equal(results[k], expected[job], err_msg=f"job {k} {job}")


def test_close_frees_buffers_and_later_calls_are_refused(onnx_path):
    voc = Vocoder.load(onnx_path, device="cpu")
    audio = voc(request(2, 10), seed=0)
    assert voc.backend.pool.nbytes > 0
    voc.close()
    assert voc.backend.pool.nbytes == 0 and voc.backend.session_object is None
    with pytest.raises(VocoderError, match="this vocoder is closed"):
        voc(request(2, 10), seed=0)
    assert np.isfinite(audio).all() and audio.shape == (2, 10 * 256)  # results handed out before stay valid
    with Vocoder.load(onnx_path, device="cpu") as scoped:
        scoped(request(1, 5))
    with pytest.raises(VocoderError, match="closed"):
        scoped(request(1, 5))
