"""The sweep on a Dask distributed cluster (a local one: two worker processes) and on this
machine's cores gives what it gives run here in order; the cache keeps what each computed."""

import functools

import pytest
from distributed import LocalCluster

from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.params import preset
from tern_fpga.explore import sweep, sweep_parallel
from tern_fpga.explore.cycle_model import compiled_layout, cycles_per_token
from tern_fpga.explore.sweep_parallel import compute_missing, executor_for
from tern_fpga.explore.synthesis_cache import ResultCache

PAIRS = (("micro", 16), ("micro", 64), ("demo", 64))


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as local:
        yield local.scheduler_address


def ask_for_cycles(cache):
    """Two rounds, as the sweep's: a pair's cycles at its own P are asked for only once its
    cycles at P are known."""
    for name, lanes in PAIRS:
        params = sweep.point_params(name, lanes)
        at_lanes = cache.get(f"cycles:{name}:{lanes}", functools.partial(
            cycles_per_token, compiled_layout(name, params)))
        if at_lanes is not None:
            cache.get(f"cycles:{name}:own", functools.partial(
                cycles_per_token, compiled_layout(name, preset(name))))


def test_computations_on_the_cluster_fill_the_cache_as_in_order(cluster, tmp_path):
    in_order, on_cluster = ResultCache(tmp_path / "order.json"), ResultCache(tmp_path / "c.json")
    assert compute_missing(ask_for_cycles, in_order, None) == 5
    with executor_for(scheduler=cluster) as executor:
        assert compute_missing(ask_for_cycles, on_cluster, executor) == 5
        assert compute_missing(ask_for_cycles, on_cluster, executor) == 0     # all cached
    assert ResultCache(tmp_path / "c.json").data == in_order.data
    assert in_order.data["cycles:micro:16"] > in_order.data["cycles:micro:64"] > 0


def test_a_small_sweep_on_the_cluster_equals_the_sweep_in_order(cluster, tmp_path):
    in_order = sweep.sweep(quick=True, cache=ResultCache(tmp_path / "cache.json"))
    with executor_for(scheduler=cluster) as executor:
        on_cluster = sweep.sweep(quick=True, executor=executor,
                                 cache=ResultCache(tmp_path / "cache.json"))
    assert len(in_order[0]) == 6 and all("tokens_per_s" in p.values for p in in_order[0])
    assert on_cluster == in_order


def test_a_sweep_on_local_processes_equals_the_sweep_in_order(tmp_path):
    cache = ResultCache(tmp_path / "cache.json")
    with executor_for(workers=2) as executor:
        assert sweep.sweep(quick=True, executor=executor, cache=cache) == \
            sweep.sweep(quick=True, cache=cache)


def test_a_scheduler_that_does_not_answer_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(sweep_parallel, "CONNECT_TIMEOUT", "2s")
    with pytest.raises(TernError, match="no Dask scheduler answers at 'tcp://127.0.0.1:9'"), \
            executor_for(scheduler="tcp://127.0.0.1:9"):
        pass
    with pytest.raises(TernError, match="--workers must be at least 1, not 0"), \
            executor_for(workers=0):
        pass
