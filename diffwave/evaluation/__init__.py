"""Quality measurement for vocoders: distances, a Griffin-Lim anchor, perceptual scores.

``metrics`` and ``griffin_lim`` need only torch (plus auraloss for the multi-resolution
STFT distance); ``perceptual`` needs the ``[eval]`` extra and imports it lazily, so
``import diffwave.evaluation`` never fails for want of an optional package.
"""
