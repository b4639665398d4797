"""Where the sweep's work runs: on this machine's cores (the default), on a Dask distributed
cluster (a scheduler's address), or here, one thing after another (one worker).

The sweep asks its :class:`~tern_fpga.explore.synthesis_cache.ResultCache` for every synthesis
and simulation it needs. :func:`compute_missing` lets it ask a :class:`CacheRecorder` first,
which answers from the cache and notes what is missing; the missing computations (each
distinct key once) run in parallel on the executor, and their results are written to the one
cache by this process as they arrive, so a failed or interrupted sweep keeps what finished. It
asks again until nothing is missing: a unit's synthesis is asked for only once the whole
design's memory mapping is known. Then the points are evaluated, again on the executor, from
the full cache. The workers of a cluster never touch the cache file; they need the same
tern-fpga and tools as this machine (``docs/sweep.md``).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed

from tern_fpga.contracts.errors import TernError
from tern_fpga.explore.synthesis_cache import ResultCache

__all__ = ["CONNECT_TIMEOUT", "CacheRecorder", "compute_missing", "executor_for",
           "run_computations"]

CONNECT_TIMEOUT = "20s"     # to reach a Dask scheduler


class CacheRecorder:
    """A stand-in for a :class:`ResultCache` that computes nothing: it answers with what
    ``data`` holds and records, in :attr:`missing`, the computation of each key it lacks."""

    def __init__(self, data: dict):
        self.data = data
        self.missing: dict[str, Callable] = {}

    def get(self, key: str, compute=None):
        if key not in self.data and compute is not None:
            self.missing.setdefault(key, compute)
        return self.data.get(key)


def run_computations(computations: dict[str, Callable], cache: ResultCache,
                     executor: Executor | None):
    """Run each ``computations[key]()`` on ``executor`` (here, in order, if ``None``) and
    store its result under ``key``; after a failure the others still finish and are stored
    before the first failure is raised."""
    if executor is None:
        for key, compute in computations.items():
            cache.put(key, compute())
        return
    futures = {executor.submit(compute): key for key, compute in computations.items()}
    failed = []
    for future in as_completed(futures):
        if future.exception() is None:
            cache.put(futures[future], future.result())
        else:
            failed.append(future)
    if failed:
        failed[0].result()      # raises what the computation raised


def compute_missing(ask: Callable[[CacheRecorder], object], cache: ResultCache,
                    executor: Executor | None) -> int:
    """Compute what ``ask(cache)`` would compute, in parallel rounds; returns how many
    results were computed."""
    computed = 0
    while True:
        recorder = CacheRecorder(cache.data)
        ask(recorder)
        if not recorder.missing:
            return computed
        run_computations(recorder.missing, cache, executor)
        computed += len(recorder.missing)


@contextlib.contextmanager
def executor_for(scheduler: str | None = None, workers: int | None = None
                 ) -> Iterator[Executor | None]:
    """The executor of a sweep: the Dask cluster at ``scheduler`` (``tcp://host:8786``), else
    ``workers`` processes here (default: one a core), ``None`` (here, in order) for one."""
    if scheduler:
        try:
            from distributed import Client  # only for a cluster (imported in a try: optional)
        except ImportError:
            raise TernError("--scheduler needs Dask distributed: pip install distributed "
                            "(it is in requirements.lock)") from None
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as error:
            raise TernError(f"no Dask scheduler answers at {scheduler!r} ({error}); start one "
                            f"with `dask scheduler` and workers with `dask worker {scheduler}`, "
                            f"or leave --scheduler out to use this machine's cores") from None
        with client:
            yield client.get_executor()
        return
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 1:
        raise TernError(f"--workers must be at least 1, not {workers}")
    if workers == 1:
        yield None
        return
    # spawn, not fork: the sweep's process has torch's and Yosys's threads running.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool
