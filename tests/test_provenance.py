"""ecgnb.provenance: the code a run loaded, data fingerprints that cost a stat the second time,
the libraries that compute, and results' identities."""
import json
import subprocess
import sys

from ecgnb import provenance


def test_a_fingerprint_changes_with_the_contents_only_and_a_second_look_reads_nothing(
        tmp_path, monkeypatch):
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.dat").write_bytes(b"1" * 1000)
    (root / "y.hea").write_text("header")
    cache = tmp_path / "hashes.json"
    first = provenance.fingerprint(root, cache)
    reads = []
    real = provenance.file_sha256
    monkeypatch.setattr(provenance, "file_sha256", lambda p: reads.append(p) or real(p))
    assert provenance.fingerprint(root, cache) == first and reads == []  # a stat per file
    (root / "y.hea").write_text("header")  # touched, same contents
    assert provenance.fingerprint(root, cache) == first and len(reads) == 1
    (root / "a" / "x.dat").write_bytes(b"2" * 1000)
    assert provenance.fingerprint(root, cache) != first
    assert provenance.fingerprint(tmp_path / "gone", cache) == "missing"
    assert len(json.loads(cache.read_text())) >= 2


def test_a_run_loads_the_backbone_it_builds_and_no_other():
    """The registry imports a backbone's module on lookup, so a run's code (the modules it
    loaded) holds its own backbone only."""
    code = ("import ecgnb.models as m, ecgnb.finetuning, ecgnb.pretraining\n"
            "from ecgnb import provenance\n"
            "before = set(provenance.loaded_code())\n"
            "m.build('tstcc', device='cpu', verbose=False)\n"
            "after = set(provenance.loaded_code())\n"
            "print(sorted(f for f in before if 'models/' in f and 'ts' in f))\n"
            "print(sorted(after - before))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == "[]"
    assert "ecgnb/models/tstcc.py" in out[1]
    assert "ts2vec" not in out[1] and "series2vec" not in out[1]


def test_the_libraries_that_compute_are_versioned():
    versions = provenance.library_versions()
    assert set(versions) == set(provenance.LIBRARIES)
    assert {"scipy", "numba", "umap-learn", "pynndescent", "scikit-learn", "wfdb"} <= set(versions)


def test_changed_files_names_edits_and_removals(tmp_path):
    (tmp_path / "a.py").write_text("A = 1\n")
    recorded = {str(tmp_path / "a.py"): provenance.file_digest(tmp_path / "a.py"),
                str(tmp_path / "b.py"): "0" * 16}
    assert provenance.changed_files(recorded) == [str(tmp_path / "b.py")]
    (tmp_path / "a.py").write_text("A = 2\n")
    assert provenance.changed_files(recorded) == [str(tmp_path / "a.py"), str(tmp_path / "b.py")]


def test_a_result_identity_follows_the_artefacts():
    record = {"artefacts": {"encoder.pt": {"size": 3, "sha256": "aa"}}}
    same = {"artefacts": {"encoder.pt": {"size": 3, "sha256": "aa"}}, "wall_s": 2.0}
    other = {"artefacts": {"encoder.pt": {"size": 3, "sha256": "bb"}}}
    assert provenance.result_id(record) == provenance.result_id(same)
    assert provenance.result_id(record) != provenance.result_id(other)
    assert provenance.result_id(None) is None
