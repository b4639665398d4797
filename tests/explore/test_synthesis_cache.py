"""The sweep's result cache: a write keeps what another sweep sharing the file wrote meanwhile,
and replaces the file whole or not at all."""

from pathlib import Path

import pytest

from tern_fpga.explore.synthesis_cache import ResultCache


def test_a_write_keeps_what_another_sweep_wrote_meanwhile(tmp_path):
    path = tmp_path / "cache.json"
    first, second = ResultCache(path), ResultCache(path)
    first.put("unit-a", 11)
    second.put("unit-b", 22)            # second never read unit-a: it is merged in, not lost
    assert ResultCache(path).data == {"unit-a": 11, "unit-b": 22}
    assert second.get("unit-a") == 11
    assert first.get("unit-c", lambda: 33) == 33
    assert ResultCache(path).data == {"unit-a": 11, "unit-b": 22, "unit-c": 33}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.json"]


def test_a_failed_write_leaves_the_file_as_it_was_and_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "cache.json"
    cache = ResultCache(path)
    cache.put("unit-a", 11)

    def interrupted(self, target):
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cache.put("unit-b", 22)
    monkeypatch.undo()
    assert ResultCache(path).data == {"unit-a": 11}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.json"]
