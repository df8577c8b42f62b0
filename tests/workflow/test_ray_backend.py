"""The Ray backend on Ray's own multi-node test cluster (``ray.cluster_utils.Cluster``).

One cluster for the module: a head that runs nothing (``num_cpus: 0``) and two worker nodes that
each declare 2 CPUs and 1 GPU (declared only: Ray schedules, nothing touches a GPU). The runs are
the tiny fake notebooks of ``test_sweep`` executed with papermill. Every Ray process binds to
127.0.0.1 (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, set before Ray is imported), and the module
ends by checking that no process it started is left.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # before Ray starts: 127.0.0.1 only

import psutil
import pytest
import yaml

from test_sweep import executions, fake_notebook, states, write_grid

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from ecgnb import cli  # noqa: E402
from ecgnb.report.collect import collect_results  # noqa: E402
from ecgnb.workflow import ray_backend, sweep  # noqa: E402
from ecgnb.workflow.grid import load_grid  # noqa: E402
from ecgnb.runs import FAILED, PROJECT_ROOT, SUCCESS  # noqa: E402

MARK = "ECGNB_RAY_TEST"  # in the environment of every process the module's cluster starts
WORKER = {"num_cpus": 2, "num_gpus": 1}
FIGURES: dict = {}  # the test cluster's figures, printed at the end (pytest -s)


def leftovers(mark: str) -> list[str]:
    """Live processes (other than this one) whose environment carries ``mark``."""
    found = []
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            if proc.pid != os.getpid() and proc.environ().get(MARK) == mark:
                found.append(f"{proc.pid} {proc.info['name']}")
        except (psutil.Error, OSError):
            continue
    return found


def start_cluster(tries: int = 2) -> Cluster:
    """A head that runs nothing and two workers; tried again once if a node misses Ray's 30-s
    start-up deadline (a machine busy with other work)."""
    for attempt in range(tries):
        test_cluster = Cluster()
        try:
            test_cluster.add_node(num_cpus=0)
            for _ in range(2):
                test_cluster.add_node(**WORKER)
            test_cluster.wait_for_nodes()
            return test_cluster
        except Exception:
            test_cluster.shutdown()
            if attempt == tries - 1:
                raise


@pytest.fixture(scope="module")
def cluster():
    from ray._private import ray_constants

    assert not ray_constants.ENABLE_RAY_CLUSTER, "Ray was imported before 127.0.0.1 was imposed"
    mark = f"{os.getpid()}-{time.time()}"
    os.environ[MARK] = mark
    start = time.time()
    test_cluster = start_cluster()
    session = test_cluster.head_node.get_session_dir_path()  # Ray's logs, removed at the end
    # one driver connection for the module (sweeps reuse it and its warm workers); the CLI test
    # joins the cluster from a driver of its own with ray.init(address=...)
    ray.init(address=test_cluster.address, log_to_driver=False)
    FIGURES["cluster_start_s"] = round(time.time() - start, 1)
    try:
        yield test_cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        test_cluster.shutdown()
        os.environ.pop(MARK, None)
        deadline = time.time() + 20
        while leftovers(mark) and time.time() < deadline:
            time.sleep(0.5)
        print(f"\nray test cluster figures: {json.dumps(FIGURES)}")
        assert leftovers(mark) == [], "processes left behind by the test cluster"
        shutil.rmtree(session, ignore_errors=True)


@pytest.fixture
def fake_nb(tmp_path):
    return fake_notebook(tmp_path / "fake.ipynb")


def use_outputs(monkeypatch, folder):
    folder.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("ECGNB_OUTPUTS", str(folder))
    return folder


def success(outputs, run: str) -> dict:
    return json.loads((outputs / "t" / run / SUCCESS).read_text())


def comparable(frame):
    return frame.drop(columns=["wall_s", "run_wall_s"]).reset_index(drop=True)


# --------------------------------------------------------------------------- tests
@pytest.mark.slow
def test_every_run_once_and_results_equal_the_local_backend(tmp_path, cluster, fake_nb,
                                                             monkeypatch):
    path = write_grid(tmp_path / "g.yaml", fake_nb, baselines={"models": ["mlp"]},
                      pretraining={"n_epochs": 2, "resources": {"num_cpus": 2, "num_gpus": 1}},
                      finetuning={"heads": ["mlp"], "modes": ["lp", "ft"], "seeds": [0, 1],
                                  "resources": {"num_cpus": 1, "num_gpus": 0.5}})
    grid = load_grid(path)
    local = use_outputs(monkeypatch, tmp_path / "local")
    start = time.time()
    local_states = states(sweep.run_sweep(grid, jobs=2, progress=False))
    FIGURES["local_s"] = round(time.time() - start, 1)

    on_ray = use_outputs(monkeypatch, tmp_path / "ray")
    start = time.time()
    statuses, executor = ray_backend.run_sweep_on_ray(grid, cluster.address, progress=False)
    FIGURES["ray_s"] = round(time.time() - start, 1)
    FIGURES["runs"] = len(grid.runs)

    assert states(statuses) == local_states == {name: "done" for name in grid.runs}
    assert sorted(executions(on_ray)) == sorted(executions(local))  # every run once
    assert all(len(ray_backend.attempts(sweep.run_folder(grid, n))) == 1 for n in grid.runs)
    assert {n: success(on_ray, n)["params_hash"] for n in grid.runs} == grid.hashes()
    assert {n: success(local, n)["params_hash"] for n in grid.runs} == grid.hashes()
    rows = collect_results(on_ray / "t", root=on_ray)
    assert len(rows) == 2 * 2 * 2 + 2 and not rows.duplicated(["run", "cell"]).any()
    assert comparable(rows).equals(comparable(collect_results(local / "t", root=local)))
    record = json.loads((on_ray / "t" / sweep.STATUS_FILE).read_text())
    assert record["counts"] == {"done": len(grid.runs)}
    assert record["runs"]["pretraining/ts2vec-ecg"]["device"].startswith("ray node")
    # the kernel saw the GPU Ray assigned
    for name, placed in executor.placements.items():
        cuda = success(on_ray, name)["summary"]["cuda"]
        assert cuda == ",".join(placed["gpus"]), name
    assert success(on_ray, "finetuning/supervised-f1.0")["summary"]["cuda"] == "0"  # finetuning's

    # interchangeable: the local scheduler finds the Ray sweep's runs complete
    def never(*args):
        raise AssertionError("a complete run ran again")
    assert set(states(sweep.run_sweep(grid, progress=False, execute=never)).values()) == {"cached"}


@pytest.mark.slow
def test_real_notebooks_on_ray_equal_the_local_backend(tmp_path, cluster, embedded_small,
                                                       monkeypatch):
    """Notebooks 02 and 04 at smoke scale: the same numbers from both backends."""
    spec = {"name": "real", "backbones": ["ts2vec"], "scenarios": ["ECG"],
            "common": {"fragment_root": str(embedded_small["fragment"]),
                       "wesad_root": str(embedded_small["wesad"]), "use_small_data": True,
                       "device": "auto"},
            "pretraining": {"model_size": "small", "n_epochs": 1, "batch_size": 32,
                            "n_windows": 32, "resources": {"num_cpus": 1}},
            "finetuning": {"heads": ["mlp"], "modes": ["lp"], "seeds": [0], "n_epochs": 1,
                           "patience": 1, "batch_size": 16, "resources": {"num_cpus": 1}}}
    path = tmp_path / "real.yaml"
    path.write_text(yaml.safe_dump(spec))
    grid = load_grid(path)
    for name in sweep.THREAD_VARIABLES:  # the same threads in both: the same floating point
        monkeypatch.setenv(name, "1")
    local = use_outputs(monkeypatch, tmp_path / "local")
    start = time.time()
    assert set(states(sweep.run_sweep(grid, progress=False)).values()) == {"done"}
    FIGURES["real_local_s"] = round(time.time() - start, 1)
    on_ray = use_outputs(monkeypatch, tmp_path / "ray")
    start = time.time()
    statuses, _ = ray_backend.run_sweep_on_ray(grid, cluster.address, progress=False)
    FIGURES["real_ray_s"] = round(time.time() - start, 1)
    assert set(states(statuses).values()) == {"done"}
    rows = collect_results(on_ray / "real", root=on_ray)
    assert len(rows) == 1
    assert comparable(rows).equals(comparable(collect_results(local / "real", root=local)))


@pytest.mark.slow
def test_failure_skips_dependants_and_gpu_runs_never_share_a_gpu(tmp_path, cluster, fake_nb,
                                                                 monkeypatch):
    outputs = use_outputs(monkeypatch, tmp_path / "out")
    path = write_grid(tmp_path / "g.yaml", fake_nb, backbones=["ts2vec", "tstcc", "series2vec"],
                      scenarios=["ECG"],
                      pretraining={"sleep_s": 1.0, "by_backbone": {"tstcc": {"fail": True}},
                                   "resources": {"num_cpus": 1, "num_gpus": 1}},
                      finetuning={"heads": ["mlp"], "modes": ["lp"], "seeds": [0],
                                  "resources": {"num_cpus": 0.5, "num_gpus": 0.25}})
    grid = load_grid(path)
    statuses, executor = ray_backend.run_sweep_on_ray(grid, cluster.address, progress=False)
    assert states(statuses) == {
        "pretraining/ts2vec-ecg": "done", "pretraining/tstcc-ecg": "failed",
        "pretraining/series2vec-ecg": "done", "finetuning/ts2vec-ecg-f1.0": "done",
        "finetuning/tstcc-ecg-f1.0": "skipped", "finetuning/series2vec-ecg-f1.0": "done"}
    failed = outputs / "t" / "pretraining" / "tstcc-ecg"
    assert "planned failure" in json.loads((failed / FAILED).read_text())["error"]
    assert not (failed / SUCCESS).exists()
    assert len(ray_backend.attempts(failed)) == 1  # a notebook that raises is not retried
    assert statuses["pretraining/tstcc-ecg"].error.endswith("planned failure")

    # a num_gpus: 1 run holds its node's only GPU: nothing else with a GPU runs there meanwhile
    spans = [(p["node"], p["start"], p["end"], grid.runs[n].section, n)
             for n, p in executor.placements.items()]
    for node, start, end, stage, name in spans:
        if stage != "pretraining":
            continue
        others = [o for o in spans if o[0] == node and o[4] != name]
        assert all(o[2] <= start or o[1] >= end for o in others), (name, others)
    assert all(p["gpus"] == ["0"] for p in executor.placements.values())


@pytest.mark.slow
def test_a_node_removed_in_flight_is_survived(tmp_path, cluster, fake_nb, monkeypatch):
    outputs = use_outputs(monkeypatch, tmp_path / "out")
    path = write_grid(tmp_path / "g.yaml", fake_nb, backbones=["ts2vec", "tstcc"],
                      scenarios=["ECG"],
                      pretraining={"sleep_s": 4.0, "resources": {"num_cpus": 2}},
                      finetuning={"heads": ["mlp"], "modes": ["lp", "ft"], "seeds": [0, 1]})
    grid = load_grid(path)
    result = {}
    sweeping = threading.Thread(target=lambda: result.update(
        statuses=ray_backend.run_sweep_on_ray(grid, cluster.address, progress=False)[0]))
    sweeping.start()
    doomed = sweep.run_folder(grid, "pretraining/ts2vec-ecg")
    deadline = time.time() + 300
    while not ray_backend.attempts(doomed) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2.0)  # its kernel is running the notebook
    node_id = ray_backend.attempts(doomed)[0]["node"]
    node, = [n for n in cluster.worker_nodes if n.node_id == node_id]
    cluster.remove_node(node, allow_graceful=False)
    sweeping.join(timeout=400)
    cluster.add_node(**WORKER)  # the next tests get two workers again

    assert not sweeping.is_alive()
    assert set(states(result["statuses"]).values()) == {"done"}
    tries = ray_backend.attempts(doomed)
    assert len(tries) == 2 and tries[1]["node"] != node_id  # retried, on the other node
    FIGURES.update(nodes_removed=1, retries=sum(
        len(ray_backend.attempts(sweep.run_folder(grid, n))) - 1 for n in grid.runs))
    rows = collect_results(outputs / "t", root=outputs)
    assert len(rows) == 2 * 2 * 2 and not rows.duplicated(["run", "cell"]).any()
    assert success(outputs, "pretraining/ts2vec-ecg")["params_hash"] == grid.hashes()[
        "pretraining/ts2vec-ecg"]
    assert success(outputs, "finetuning/ts2vec-ecg-f1.0")["summary"]["cuda"] == ""  # asked for none


@pytest.mark.slow
def test_driver_killed_hard_then_started_again_resumes(tmp_path, cluster, fake_nb, monkeypatch):
    outputs = tmp_path / "out"
    path = write_grid(tmp_path / "g.yaml", fake_nb, scenarios=["ECG"], finetuning={
        "heads": ["mlp"], "modes": ["lp", "ft"], "seeds": [0, 1], "sleep_s": 3.0})
    pythonpath = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath, "ECGNB_OUTPUTS": str(tmp_path / "elsewhere")}
    proc = subprocess.Popen([sys.executable, "-m", "ecgnb.cli", "run", str(path), "--ray",
                             cluster.address, "--outputs", str(outputs)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    running = outputs / "t" / "finetuning" / "ts2vec-ecg-f1.0"
    deadline = time.time() + 300
    while not ray_backend.attempts(running) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ray_backend.attempts(running), "the sweep never reached the downstream run"
    time.sleep(4.0)  # the killed driver's task would have finished by now, had Ray kept it
    use_outputs(monkeypatch, outputs)
    grid = load_grid(path)
    assert sweep.plan(grid)["finetuning/ts2vec-ecg-f1.0"].state == "pending"  # nothing complete
    assert collect_results(outputs / "t", root=outputs).empty

    statuses, _ = ray_backend.run_sweep_on_ray(grid, cluster.address, progress=False)
    assert states(statuses) == {"pretraining/ts2vec-ecg": "cached", "finetuning/ts2vec-ecg-f1.0": "done"}
    assert len(ray_backend.attempts(running)) == 2
    rows = collect_results(outputs / "t", root=outputs)
    assert len(rows) == 2 * 2 and not rows.duplicated(["run", "cell"]).any()


@pytest.mark.slow
def test_a_killed_kernel_is_retried_by_ray(tmp_path, cluster, fake_nb, monkeypatch):
    outputs = use_outputs(monkeypatch, tmp_path / "out")
    path = write_grid(tmp_path / "g.yaml", fake_nb, backbones=["ts2vec", "tstcc"],
                      scenarios=["ECG"], pretraining={"by_backbone": {
                          "ts2vec": {"die": "once"}, "tstcc": {"die": "always"}}},
                      finetuning={"heads": ["mlp"], "modes": ["lp"], "seeds": [0]})
    grid = load_grid(path)
    statuses, _ = ray_backend.run_sweep_on_ray(grid, cluster.address, progress=False,
                                               max_retries=1)
    assert states(statuses) == {"pretraining/ts2vec-ecg": "done", "pretraining/tstcc-ecg": "failed",
                                "finetuning/ts2vec-ecg-f1.0": "done",
                                "finetuning/tstcc-ecg-f1.0": "skipped"}
    for name in ("pretraining/ts2vec-ecg", "pretraining/tstcc-ecg"):  # Ray ran each twice
        assert len(ray_backend.attempts(sweep.run_folder(grid, name))) == 2, name
    failed = json.loads((outputs / "t" / "pretraining" / "tstcc-ecg" / FAILED).read_text())
    assert failed["kernel"]["signal"] == "SIGKILL"
    assert "kernel killed by SIGKILL" in statuses["pretraining/tstcc-ecg"].error


def test_outputs_a_node_cannot_see_fail_clearly(tmp_path):
    assert "cannot see" in ray_backend._probe(str(tmp_path), "no-such-token")


def test_resources_no_node_has_and_pinned_gpus_fail_before_the_sweep(tmp_path, fake_nb):
    nodes = [{"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}},
             {"Alive": True, "Resources": {"CPU": 16.0}},
             {"Alive": False, "Resources": {"GPU": 4.0}}]
    fake_ray = SimpleNamespace(nodes=lambda: nodes)
    fits = write_grid(tmp_path / "a.yaml", fake_nb, pretraining={"resources": {"num_gpus": 1}},
                      finetuning={"resources": {"num_cpus": 12}})
    ray_backend.check_resources(fake_ray, load_grid(fits))
    too_big = write_grid(tmp_path / "b.yaml", fake_nb,
                         pretraining={"resources": {"num_gpus": 1, "num_cpus": 12}})
    with pytest.raises(ValueError, match="pretraining.resources .* fit no node"):
        ray_backend.check_resources(fake_ray, load_grid(too_big))
    ray_backend.check_devices(load_grid(fits))
    pinned = write_grid(tmp_path / "c.yaml", fake_nb, common={"device": "cuda:1"})
    with pytest.raises(ValueError, match="set device: auto"):
        ray_backend.check_devices(load_grid(pinned, local_devices=False))


def test_cli_ray_flags(tmp_path, fake_nb, monkeypatch, capsys):
    args = cli.build_parser().parse_args(["run", "g.yaml", "--ray"])
    assert args.ray == "local" and args.jobs is None
    assert cli.build_parser().parse_args(["run", "g.yaml", "--ray", "auto"]).ray == "auto"
    path = write_grid(tmp_path / "g.yaml", fake_nb)
    assert cli.main(["run", str(path), "--ray", "auto", "--devices", "cuda:0"]) == 2
    assert "--devices is for the local scheduler" in capsys.readouterr().err
    monkeypatch.setenv("ECGNB_OUTPUTS", str(tmp_path / "default"))
    assert cli.main(["run", str(path), "--dry-run", "--outputs", str(tmp_path / "chosen")]) == 0
    assert str(tmp_path / "chosen" / "t") in capsys.readouterr().out
