"""CUDA graphs around the whole reverse loop: captured once per call shape, then replayed.

The first call with a given key runs eagerly (that is the warm-up: cuDNN/TensorRT pick and,
for TensorRT-RTX, compile their kernels); the second captures the loop on the backend's
non-default stream and replays it; later calls only replay. If capture fails the key is
remembered and runs eagerly from then on, with one warning.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Any, Callable, Hashable

MAX_GRAPHS = 16


class GraphCache:
    def __init__(self, stream: Any):
        self.stream = stream
        self._graphs: "OrderedDict[Hashable, Any]" = OrderedDict()
        self._seen: set[Hashable] = set()
        self._failed: set[Hashable] = set()

    def clear(self) -> None:
        """Forget every captured graph (their buffers are about to be freed)."""
        self._graphs.clear()
        self._seen.clear()
        self._failed.clear()

    def run(self, key: Hashable, body: Callable[[], None]) -> str:
        """Run ``body`` (all steps) for ``key``; returns "eager", "captured" or "replayed"."""
        import torch

        graph = self._graphs.get(key)
        if graph is not None:
            self._graphs.move_to_end(key)
            with torch.cuda.stream(self.stream):
                graph.replay()
            return "replayed"
        if key in self._failed or key not in self._seen:
            self._seen.add(key)  # this eager run is the warm-up the capture needs
            with torch.cuda.stream(self.stream):
                body()
            return "eager"
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=self.stream):
                body()
        except Exception as exc:  # capture is best effort: any failure means plain execution
            self._failed.add(key)
            warnings.warn(f"CUDA graph capture failed ({type(exc).__name__}: {exc}); running without graphs")
            with torch.cuda.stream(self.stream):
                body()
            return "eager"
        self._graphs[key] = graph
        if len(self._graphs) > MAX_GRAPHS:
            self._graphs.popitem(last=False)
        with torch.cuda.stream(self.stream):
            graph.replay()
        return "captured"
