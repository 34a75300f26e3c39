"""``diffwave bench``: every backend against lmnt's sampling loop, in one run, on the same weights.

* :mod:`.reference` — lmnt's loop as lmnt runs it (the baseline of every speed-up);
* :mod:`.contenders` — the rows a run can have and how each is loaded;
* :mod:`.timing` — clocks (CUDA events on GPU), interleaved rounds, medians, paired speed-ups;
* :mod:`.memory` — peak memory of one call, in a fresh worker process per row;
* :mod:`.machine` — CPU, cores, GPU, library versions and load of the machine measured;
* :mod:`.report` — the table, the ``diffwave-bench/1`` JSON and the plot;
* :mod:`.harness` — runs it all.
"""

from .contenders import CONTENDERS, BenchModels, Contender
from .harness import BenchSettings, run_bench
from .report import SCHEMA, BenchReport, BenchRow, Skipped

__all__ = ["CONTENDERS", "BenchModels", "Contender", "BenchSettings", "run_bench", "SCHEMA", "BenchReport", "BenchRow", "Skipped"]
