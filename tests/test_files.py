"""ecgnb.files: atomic files and folders; no writer shares a temporary name; a race publishes one."""
import threading

import pytest

from ecgnb import files


def test_an_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "a.json"
    files.write_json(path, {"v": 1})
    with pytest.raises(RuntimeError):
        with files.atomic_write(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert path.read_text().strip().startswith("{")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_threads_writing_one_file_never_share_a_temporary_name(tmp_path):
    path, errors = tmp_path / "a.json", []

    def write(i):
        try:
            for j in range(50):
                files.write_json(path, {"writer": i, "n": j})
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)
    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_the_first_folder_published_wins(tmp_path):
    final = tmp_path / "corpus"
    with files.atomic_folder(final) as tmp:
        (tmp / "x").write_text("first")
        with files.atomic_folder(final) as other:  # a racing writer publishes first
            (other / "x").write_text("second")
    assert (final / "x").read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["corpus"]
