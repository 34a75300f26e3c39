"""The runtime's own error types. Every message is one line meant for a person at a terminal.

The CLI prints ``str(error)`` and exits; a service embedding ``runtime`` can catch
:class:`VocoderError` (bad input, inconsistent bundle) apart from :class:`DeviceUnsupported`
(this machine cannot run the model at all, whatever the input).
"""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """An exception's first line for a one-line message; its type's name when it says nothing.

    Libraries put whole tracebacks, or paragraphs of advice, into their messages; the first
    line is the one that names what went wrong.
    """
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class VocoderError(ValueError):
    """The input or the model cannot be vocoded as asked (one line, naming what is wrong)."""


class NonFiniteOutput(VocoderError):
    """The network turned finite input into NaN or inf: the model (its weights, its graph) is broken."""


class DeviceUnsupported(VocoderError):
    """This machine cannot run the model: no GPU, a GPU the plan does not support, no CUDA build.

    Separate from :class:`VocoderError` so callers can fall back to another backend
    (e.g. ONNX Runtime on CPU) instead of rejecting the request.
    """
