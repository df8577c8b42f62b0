"""The cache of windowed corpora: same windows as the pickles, stale on a changed source, one
published folder under concurrency, killed or corrupt builds never trusted."""
import multiprocessing
import os
import shutil
import time

import numpy as np
import pytest

from ecgnb.config import DataWarning
from ecgnb.data import cache, corpora, load_wesad

SETTINGS = {"channels": ("ECG", "EDA"), "fraction": 0.5, "seed": 1}


@pytest.fixture
def wesad(embedded_small, tmp_path):
    """A private copy of the small WESAD tree (tests touch its files)."""
    return shutil.copytree(embedded_small["wesad"], tmp_path / "wesad")


@pytest.fixture
def builds(monkeypatch, tmp_path):
    """Every build appends a line to a log file (seen across forked processes too)."""
    log = tmp_path / "builds.log"
    real = cache.build_corpus_folder

    def counting(folder, *args):
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        time.sleep(0.5)  # a slow build: a racing reader arrives while it runs
        return real(folder, *args)

    monkeypatch.setattr(cache, "build_corpus_folder", counting)
    return lambda: len(log.read_text().splitlines()) if log.exists() else 0


def assert_same(a, b):
    np.testing.assert_array_equal(a.x, b.x)
    for name in ("y", "groups", "domains"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.fs, a.classes, a.x.dtype) == (b.fs, b.classes, b.x.dtype)


def test_cached_windows_equal_the_pickles(wesad, tmp_path, builds):
    reference = load_wesad(wesad, **SETTINGS)
    first = cache.cached_wesad(wesad, cache_dir=tmp_path / "cache", **SETTINGS)
    again = cache.cached_wesad(wesad, cache_dir=tmp_path / "cache", **SETTINGS)
    assert_same(first, reference)
    assert_same(again, reference)
    assert isinstance(again.x, np.memmap)
    assert builds() == 1


def test_build_corpus_reads_through_the_cache(wesad, monkeypatch, tmp_path, builds):
    monkeypatch.setenv("ECGNB_DATA", str(tmp_path / "root"))
    cached = corpora.build_corpus("All", wesad)
    plain = corpora.build_corpus("All", wesad, use_cache=False)
    assert_same(cached, plain)
    assert len(list((tmp_path / "root" / "cache").glob("wesad-*/meta.json"))) == 1
    assert builds() == 1


def test_a_touched_source_is_read_again_and_an_edited_one_rebuilds(wesad, tmp_path, builds):
    """The key holds the sources' contents: a new mtime alone costs a look, not a build; new
    contents give another corpus."""
    cache.cached_wesad(wesad, cache_dir=tmp_path / "cache", **SETTINGS)
    pickle = wesad / "S3" / "S3.pkl"
    stat = pickle.stat()
    os.utime(pickle, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    cache.cached_wesad(wesad, cache_dir=tmp_path / "cache", **SETTINGS)
    assert builds() == 1
    shutil.copyfile(wesad / "S2" / "S2.pkl", pickle)  # other contents under the same name
    windows = cache.cached_wesad(wesad, cache_dir=tmp_path / "cache", **SETTINGS)
    assert builds() == 2
    assert len(list((tmp_path / "cache").glob("wesad-*/meta.json"))) == 2
    assert_same(windows, load_wesad(wesad, **SETTINGS))


def test_an_edit_to_the_windowing_code_rebuilds(wesad, tmp_path, builds, monkeypatch):
    from ecgnb import provenance

    cache.cached_wesad(wesad, cache_dir=tmp_path / "cache", **SETTINGS)
    real = provenance.file_digest
    monkeypatch.setattr(provenance, "file_digest", lambda p: "0" * 16
                        if provenance.shown_path(p) == "ecgnb/data/formats.py" else real(p))
    cache.cached_wesad(wesad, cache_dir=tmp_path / "cache", **SETTINGS)
    assert builds() == 2


def _race(wesad, cache_dir, queue):
    windows = cache.cached_wesad(wesad, cache_dir=cache_dir, **SETTINGS)
    queue.put(np.asarray(windows.x).tobytes())


def test_racing_processes_publish_one_folder(wesad, tmp_path, builds):
    """Two processes that need the same corpus at once: no lock; each builds in its own folder,
    the first rename publishes, the other discards its copy; both read the same windows."""
    context = multiprocessing.get_context("fork")  # the children inherit the counting build
    queue = context.Queue()
    workers = [context.Process(target=_race, args=(wesad, tmp_path / "cache", queue))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    assert 1 <= builds() <= 2
    assert results[0] == results[1] == load_wesad(wesad, **SETTINGS).x.tobytes()
    assert [p.name.startswith("wesad-") for p in (tmp_path / "cache").iterdir()] == [True]


def test_a_killed_build_is_ignored_and_cleared_once_old(wesad, tmp_path, builds):
    folder = _built_folder(wesad, tmp_path / "cache")
    shutil.rmtree(folder)
    dead = folder.parent / f".{folder.name}.99999-1-deadbeef.tmp"  # a build killed midway
    dead.mkdir()
    (dead / "part-0.npy").write_bytes(b"\x93NUMPY half a file")
    day_ago = time.time() - cache.STALE_TMP_S - 60
    os.utime(dead, (day_ago, day_ago))
    live = folder.parent / f".{folder.name}.99998-1-cafecafe.tmp"  # perhaps a live build
    live.mkdir()
    windows = cache.cached_wesad(wesad, cache_dir=tmp_path / "cache", **SETTINGS)
    assert_same(windows, load_wesad(wesad, **SETTINGS))
    assert not dead.exists() and live.exists() and builds() == 2


@pytest.mark.parametrize("damage", ["truncate", "no meta"])
def test_a_corrupt_cache_is_rebuilt(wesad, tmp_path, builds, damage):
    folder = _built_folder(wesad, tmp_path / "cache")
    if damage == "truncate":
        with open(folder / "x.npy", "r+b") as handle:
            handle.truncate(1000)
    else:
        (folder / "meta.json").unlink()
    with pytest.warns(DataWarning, match="incomplete or corrupt"):
        windows = cache.cached_wesad(wesad, cache_dir=tmp_path / "cache", **SETTINGS)
    assert_same(windows, load_wesad(wesad, **SETTINGS))
    assert builds() == 2


def _built_folder(wesad, cache_dir):
    cache.cached_wesad(wesad, cache_dir=cache_dir, **SETTINGS)
    (folder,) = [p for p in cache_dir.glob("wesad-*") if p.is_dir()]
    return folder
