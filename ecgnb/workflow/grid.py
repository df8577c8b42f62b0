"""A grid file (YAML) expanded into concrete notebook runs with explicit dependencies.

A grid names the study's axes once; :func:`load_grid` turns it into :class:`Run` objects:

- ``pretraining/<backbone>-<corpus>``: notebook 02, one per backbone x base corpus needed;
  ``pretraining/<backbone>-untrained`` (scenario "untrained"): notebook 02 with ``n_epochs: 0``,
  the encoder at its initial weights, fine-tuned and probed like the pretrained ones;
- ``regularization/<backbone>-<scenario>``: notebook 03, one per backbone x continuation scenario
  (and every scenario on its chain), parent = the run of the scenario it continues;
- ``finetuning/<backbone>-<scenario>-f<fraction>``: notebook 04, one per encoder x label fraction
  (one execution evaluates heads x modes x seeds);
- ``finetuning/supervised-f<fraction>``: notebook 04 with ``encoder_run: none`` (the baselines);
- ``embeddings/<backbone>-<scenario>-vs-<scenario>``: notebook 05 over two finetuning runs.

``pretrain_seeds: [0, 1, 2]`` repeats every pretraining run, its continuations and their
downstream and embeddings runs once per seed (notebooks 02 and 03 get ``seed: <p>``; the grid
then sets ``seed`` there itself), named with ``-p<seed>`` after the scenario for seeds other than
0 (``pretraining/ts2vec-ecg-p1``, ``finetuning/ts2vec-ecg-p1-f1.0``); absent, one pretraining
run each with the sections' own ``seed``, named without ``-p``. The baselines have no encoder: one
set. With several pretraining seeds the report tests strategies, not checkpoints.

Run folders are ``<outputs>/<grid name>/<run name>``; parameters that name other runs
(``parent_run``, ``encoder_run``, ``runs``) hold these full names. Each run's parameters are
``common`` (where the notebook declares them) < the stage's section < ``by_backbone`` <
``by_step`` < what the grid itself sets (keys a section may not set). Schema::

    name: demo                      # the grid's folder under the outputs root
    common: {...}                   # data roots, use_small_data, split_seed, device, ...
    backbones: [ts2vec, tstcc, series2vec]
    pretrain_seeds: [0, 1, 2]       # optional: encoders (and all downstream) per seed
    scenarios: [untrained, ECG, All, ECG continued1, ECG extended]
    pretraining:  {<02 params>, by_backbone: {<backbone>: {...}}, notebook: <path>}
    regularization: {<03 params>, by_backbone: {...}, by_step: {<step>: {...}}, notebook: ...}
    finetuning:   {<04 params>, label_fractions: [1.0], by_backbone: {...}, notebook: ...}
    baselines:    {models: [hinception, mlp, fcn], <04 params>}   # unset 04 params: finetuning's
    embeddings:   {compare: [{backbone: ts2vec, scenarios: [ECG, ECG continued1]}], <05 params>}

Any section may also hold ``resources: {num_cpus: 2, num_gpus: 1, memory: <bytes>}``: what one of
its runs asks of a Ray cluster (``ecgnb run --ray``, :mod:`ecgnb.ray_backend`; baselines without
their own take finetuning's). The local scheduler ignores them and they are not in the run's hash.
"""
from __future__ import annotations

import dataclasses
import fnmatch
from pathlib import Path
from typing import Iterable

from ecgnb.data import cards, scenarios as scenario_names
from ecgnb.data.windows import DataError
from ecgnb.data.scenarios import SCENARIOS, Scenario, slug
from ecgnb.runs import NO_ENCODER, PROJECT_ROOT
from ecgnb.runs import NOTEBOOKS as STAGE_NOTEBOOKS
from ecgnb.workflow.runner import (ParameterError, declared_parameters, params_hash, read_yaml,
                                   resolve_params, validate_parameters)

# Grid sections: a stage each, but the baselines, which run the finetuning notebook without encoder.
SECTIONS = ("pretraining", "regularization", "finetuning", "baselines", "embeddings")
STAGE_OF_SECTION = {section: "finetuning" if section == "baselines" else section
                    for section in SECTIONS}
NOTEBOOKS = {section: STAGE_NOTEBOOKS[stage] for section, stage in STAGE_OF_SECTION.items()}
TOP_KEYS = ("name", "common", "backbones", "scenarios", "pretrain_seeds") + SECTIONS
# Grid keys of a section that are not notebook parameters.
SECTION_KEYS = {"pretraining": ("notebook", "resources", "by_backbone"),
                "regularization": ("notebook", "resources", "by_backbone", "by_step"),
                "finetuning": ("notebook", "resources", "by_backbone", "label_fractions"),
                "baselines": ("notebook", "resources", "models", "label_fractions"),
                "embeddings": ("notebook", "resources", "compare")}
# What a run may ask of a Ray cluster (``resources`` of a section); Ray's own names.
RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory")
# Parameters the grid sets itself: a section setting them is an error.
GRID_SET = {"pretraining": ("backbone", "corpus"),
            "regularization": ("parent_run", "scenario"),
            "finetuning": ("encoder_run", "label_fraction", "baselines"),
            "baselines": ("encoder_run", "label_fraction", "baselines", "heads", "modes"),
            "embeddings": ("runs",)}


class GridError(ValueError):
    """A grid file that cannot be expanded (unknown key, unknown scenario, bad value)."""


@dataclasses.dataclass(frozen=True)
class Run:
    """One notebook execution. ``name`` is relative to the grid folder; ``parents`` are names."""

    name: str
    section: str  # of the grid file: a stage's, or "baselines"
    notebook: Path
    params: dict
    parents: tuple[str, ...] = ()
    n_cells: int = 0  # downstream cells the run evaluates (finetuning, baselines)


@dataclasses.dataclass
class Grid:
    """The expanded grid: runs in dependency order (parents first)."""

    name: str
    source: Path
    runs: dict[str, Run]
    resources: dict[str, dict] = dataclasses.field(default_factory=dict)  # per section (Ray)

    def run_id(self, name: str) -> str:
        """The run name given to the runner: ``<grid name>/<run name>``."""
        return f"{self.name}/{name}"

    def hashes(self) -> dict[str, str]:
        """Per run: ``params_hash(params, parents' hashes)`` (a parent's parameters reach its
        dependants; a parent that runs again or whose result changed reaches them through the
        sweep's plan, :func:`ecgnb.workflow.sweep.stale_reason`)."""
        out: dict[str, str] = {}
        for name, run in self.runs.items():
            out[name] = params_hash(run.params, tuple(out[p] for p in run.parents))
        return out

    def ancestors(self, names: Iterable[str]) -> set[str]:
        todo, seen = list(names), set()
        while todo:
            for parent in self.runs[todo.pop()].parents:
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        return seen

    def descendants(self, name: str) -> set[str]:
        out: set[str] = set()
        for other, run in self.runs.items():  # dependency order: parents come first
            if name in run.parents or out.intersection(run.parents):
                out.add(other)
        return out

    def select(self, pattern: str | None) -> list[str]:
        """Runs matching the glob ``pattern`` (on run names) plus all their ancestors."""
        if not pattern:
            return list(self.runs)
        hits = [n for n in self.runs if fnmatch.fnmatch(n, pattern)
                or fnmatch.fnmatch(self.run_id(n), pattern)]
        if not hits:
            raise GridError(f"--only '{pattern}' matches no run of grid '{self.name}'")
        keep = set(hits) | self.ancestors(hits)
        return [n for n in self.runs if n in keep]

    def counts(self) -> dict[str, dict[str, int]]:
        """Per section: number of runs and of downstream cells."""
        out = {s: {"runs": 0, "cells": 0} for s in SECTIONS}
        for run in self.runs.values():
            out[run.section]["runs"] += 1
            out[run.section]["cells"] += run.n_cells
        return out


# --------------------------------------------------------------------------- loading
def load_grid(path, validate: bool = True, local_devices: bool = True) -> Grid:
    """Read, expand and (by default) validate every run against its notebook's parameters;
    ``local_devices``: a ``cuda`` device must exist on this machine (not so for a cluster)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no grid file at {path}")
    spec = read_yaml(path) or {}
    grid = expand(spec, path, use_declared=validate)
    if validate:
        validate_grid(grid, local_devices)
    return grid


def expand(spec: dict, source: Path, use_declared: bool = True) -> Grid:
    """The runs of a grid ``spec`` (the parsed YAML); ``source`` names the file in errors.

    ``use_declared``: give ``common`` keys only to notebooks that declare them (reads the
    notebooks); without it every run gets every common key (for counting runs only).
    """
    where = str(source)
    _check_spec(spec, where)
    notebooks = {s: _notebook(spec.get(s) or {}, s) for s in SECTIONS}
    common = _common_for(spec, notebooks, use_declared, where)
    backbones = list(spec["backbones"])
    scenarios = [scenario_names.get(s) for s in spec["scenarios"]]
    expander = _Expander(spec["name"], where, notebooks, common, spec)
    seeds = spec.get("pretrain_seeds") or [None]  # None: the sections' own seed, today's names
    runs: list[Run] = []
    for seed in seeds:
        for backbone in backbones:
            runs += expander.encoders(backbone, scenarios, seed)
    if spec.get("finetuning") is not None:
        for seed in seeds:
            for backbone in backbones:
                runs += expander.finetuning(backbone, scenarios, seed)
    if spec.get("baselines") is not None:
        runs += expander.baselines()
    if spec.get("embeddings") is not None:
        for seed in seeds:
            runs += expander.embeddings(backbones, {r.name for r in runs}, seed)
    # data folders and cards as the runs will read them (two folders, two hashes)
    runs = [dataclasses.replace(r, params=resolve_params(r.params)) for r in runs]
    return Grid(spec["name"], Path(source), {r.name: r for r in runs}, _resources(spec, where))


def validate_grid(grid: Grid, local_devices: bool = True) -> None:
    """Every run's parameters against its notebook's declared parameters (keys, types, ranges;
    devices on this machine when ``local_devices``)."""
    for run in grid.runs.values():
        validate_parameters(run.notebook, run.params,
                            where=f"{grid.source}: run '{run.name}' ({run.section})",
                            stage=STAGE_OF_SECTION[run.section], local_devices=local_devices)


def _check_spec(spec: dict, where: str) -> None:
    if not isinstance(spec, dict):
        raise GridError(f"{where}: a grid file is a mapping with keys {list(TOP_KEYS)}")
    _reject(spec, TOP_KEYS, where)
    for key in ("name", "backbones", "scenarios"):
        if not spec.get(key):
            raise GridError(f"{where}: '{key}' is required")
    if not isinstance(spec["name"], str) or "/" in spec["name"]:
        raise GridError(f"{where}: 'name' must be a folder name, got {spec['name']!r}")
    _check_names(spec["backbones"], _known_backbones(), "backbone", where)
    _check_scenarios(spec["scenarios"], where)
    for key in SECTIONS:
        section = spec.get(key)
        if section is not None and not isinstance(section, dict):
            raise GridError(f"{where}: '{key}' must be a mapping, got {section!r}")
        clash = sorted(set(section or {}) & set(GRID_SET[key]))
        if clash:
            raise GridError(f"{where}: '{key}' may not set {clash}: the grid sets them per run")
    _check_subsections(spec, where)
    _check_pretrain_seeds(spec, where)


def _check_pretrain_seeds(spec: dict, where: str) -> None:
    if "pretrain_seeds" not in spec:
        return
    seeds = spec["pretrain_seeds"]
    if (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
            or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in seeds)):
        raise GridError(f"{where}: pretrain_seeds must be a list of distinct integers >= 0, "
                        f"got {seeds!r}")
    for key in ("pretraining", "regularization"):
        section = spec.get(key) or {}
        overrides = [section] + list((section.get("by_backbone") or {}).values()) \
            + list((section.get("by_step") or {}).values())
        if any("seed" in o for o in overrides):
            raise GridError(f"{where}: '{key}' sets 'seed' while pretrain_seeds is given: the "
                            "grid sets it per run from pretrain_seeds; remove it")


def _resources(spec: dict, where: str) -> dict[str, dict]:
    """Per section: its's ``resources`` (baselines fall back on finetuning's), checked."""
    out = {}
    for key in SECTIONS:
        section = spec.get(key) or {}
        if "resources" in section:
            out[key] = _check_resources(section["resources"], f"{where}: {key}.resources")
    if "baselines" not in out and "finetuning" in out:
        out["baselines"] = out["finetuning"]
    return out


def _check_resources(resources, where: str) -> dict:
    if not isinstance(resources, dict):
        raise GridError(f"{where} must be a mapping with keys among {list(RESOURCE_KEYS)}")
    _reject(resources, RESOURCE_KEYS, where)
    for key, value in resources.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise GridError(f"{where}: {key} must be a number >= 0, got {value!r}")
    gpus = resources.get("num_gpus", 0)
    if gpus > 1 and gpus != int(gpus):
        raise GridError(f"{where}: num_gpus above 1 must be whole, got {gpus}")
    return dict(resources)


def _check_subsections(spec: dict, where: str) -> None:
    steps = sorted({step.name for s in SCENARIOS.values() for step in s.steps})
    for name, key, known in (("pretraining", "by_backbone", spec["backbones"]),
                             ("regularization", "by_backbone", spec["backbones"]),
                             ("finetuning", "by_backbone", spec["backbones"]),
                             ("regularization", "by_step", steps)):
        overrides = (spec.get(name) or {}).get(key) or {}
        if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
            raise GridError(f"{where}: {name}.{key} maps names to parameter mappings")
        _check_names(list(overrides), known, f"{name}.{key} name", where)


def _check_scenarios(names, where: str) -> None:
    """Known scenarios, or corpus cards that read (keys and values checked, no data read)."""
    _check_names([n for n in names if not cards.is_card(n)] if isinstance(names, list) else names,
                 list(SCENARIOS), "scenario", where)
    for name in names:
        if cards.is_card(name):
            try:
                cards.read_card(name, kind="corpus")
            except DataError as exc:
                raise GridError(f"{where}: scenario {exc}") from None


def _check_names(values, known, what: str, where: str) -> None:
    if not isinstance(values, list):
        raise GridError(f"{where}: expected a list of {what}s, got {values!r}")
    unknown = [v for v in values if v not in known]
    if unknown:
        raise GridError(f"{where}: unknown {what}(s) {unknown}; known: {list(known)}")


def _reject(values: dict, known, where: str) -> None:
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise GridError(f"{where}: unknown key(s) {unknown}; known: {list(known)}")


def _known_backbones() -> list[str]:
    from ecgnb.models import REGISTRY
    return sorted(REGISTRY)


def _notebook(section: dict, key: str) -> Path:
    path = Path(section.get("notebook") or NOTEBOOKS[key]).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def _common_for(spec: dict, notebooks: dict, use_declared: bool, where: str) -> dict:
    """Per section: the common parameters its notebook declares (all of them if it is missing:
    :func:`validate_grid` then reports the missing notebook)."""
    common = spec.get("common") or {}
    if not isinstance(common, dict):
        raise GridError(f"{where}: 'common' must be a mapping of parameters")
    if not use_declared:
        return {key: dict(common) for key in SECTIONS}
    used = [s for s in SECTIONS
            if s in ("pretraining", "regularization") or spec.get(s) is not None]
    declared = {s: set(declared_parameters(notebooks[s])) for s in used if notebooks[s].is_file()}
    unused = sorted(k for k in common if not any(k in d for d in declared.values()))
    if unused and len(declared) == len(used):
        raise ParameterError(f"{where}: common parameter(s) {unused} are declared by no notebook")
    return {key: {k: v for k, v in common.items() if k in declared.get(key, common)}
            for key in SECTIONS}


# --------------------------------------------------------------------------- expansion
def fraction_tag(fraction: float) -> str:
    """``1.0`` -> ``f1.0``, ``0.2`` -> ``f0.2`` (the label fraction in run names)."""
    return f"f{float(fraction):g}" if float(fraction) != 1.0 else "f1.0"


class _Expander:
    """Builds the runs of one grid; holds only the parsed grid (no state between grids)."""

    def __init__(self, name: str, where: str, notebooks: dict, common: dict, spec: dict):
        self.name, self.where, self.notebooks, self.common = name, where, notebooks, common
        self.spec = spec

    def _section(self, key: str) -> dict:
        section = dict(self.spec.get(key) or {})
        return {k: v for k, v in section.items() if k not in SECTION_KEYS[key]}

    def _params(self, key: str, backbone: str | None, own: dict, step: str | None = None) -> dict:
        section = self.spec.get(key) or {}
        params = {**self.common[key], **self._section(key)}
        params.update((section.get("by_backbone") or {}).get(backbone, {}) or {})
        if step is not None:
            params.update((section.get("by_step") or {}).get(step, {}) or {})
        return {**params, **own}

    def full(self, run_name: str) -> str:
        return f"{self.name}/{run_name}"

    def encoders(self, backbone: str, scenarios: list[Scenario],
                 seed: int | None = None) -> list[Run]:
        """Pretraining and continuation runs of ``backbone`` for ``scenarios`` and their chains
        (``seed``: the pretraining seed, set in each run; None: the sections' own)."""
        needed: dict[str, Scenario] = {}
        for scenario in scenarios:
            chain = [scenario]
            while chain[-1].parent is not None:
                chain.append(chain[-1].parent)
            for s in reversed(chain):
                needed.setdefault(s.name, s)
        runs = []
        order = list(SCENARIOS) + list(needed)  # corpus cards after the study's scenarios
        for s in sorted(needed.values(), key=lambda s: (len(s.steps), order.index(s.name))):
            runs.append(self._pretrain(backbone, s, seed) if not s.steps
                        else self._continue(backbone, s, seed))
        return runs

    def _pretrain(self, backbone: str, s: Scenario, seed: int | None) -> Run:
        own = {"backbone": backbone, "corpus": s.corpus, **_seed(seed)}
        if not s.trained:  # "untrained": the same network and settings, 0 epochs
            own["n_epochs"] = 0
        params = self._params("pretraining", backbone, own)
        return Run(encoder_run(backbone, s.name, seed), "pretraining",
                   self.notebooks["pretraining"], params)

    def _continue(self, backbone: str, s: Scenario, seed: int | None) -> Run:
        parent = encoder_run(backbone, s.parent.name, seed)
        own = {"parent_run": self.full(parent), "scenario": s.name, **_seed(seed)}
        params = self._params("regularization", backbone, own, step=s.last_step.name)
        return Run(encoder_run(backbone, s.name, seed), "regularization",
                   self.notebooks["regularization"], params, (parent,))

    def _fractions(self, key: str) -> list[float]:
        section = self.spec.get(key) or {}
        fallback = (self.spec.get("finetuning") or {}).get("label_fractions", [1.0])
        fractions = section.get("label_fractions", fallback)
        if not isinstance(fractions, list) or not all(0 < float(f) <= 1 for f in fractions):
            raise GridError(f"{self.where}: {key}.label_fractions must be a list in (0, 1]")
        return [float(f) for f in fractions]

    def finetuning(self, backbone: str, scenarios: list[Scenario],
                   seed: int | None = None) -> list[Run]:
        runs = []
        for s in scenarios:
            for fraction in self._fractions("finetuning"):
                parent = encoder_run(backbone, s.name, seed)
                own = {"encoder_run": self.full(parent), "label_fraction": fraction}
                params = self._params("finetuning", backbone, own)
                n_cells = _n_cells(params, ("heads", "modes", "seeds"))
                runs.append(Run(finetune_run(backbone, s.name, fraction, seed), "finetuning",
                                self.notebooks["finetuning"], params, (parent,), n_cells))
        return runs

    def baselines(self) -> list[Run]:
        section = self.spec["baselines"]
        models = section.get("models", ["hinception", "mlp", "fcn"])
        inherited = {k: v for k, v in self._section("finetuning").items()
                     if k not in ("heads", "modes")}
        runs = []
        for fraction in self._fractions("baselines"):
            own = {"encoder_run": NO_ENCODER, "baselines": list(models), "label_fraction": fraction}
            params = {**self.common["baselines"], **inherited, **self._section("baselines"), **own}
            n_cells = _n_cells(params, ("baselines", "seeds"))
            runs.append(Run(f"finetuning/supervised-{fraction_tag(fraction)}", "baselines",
                            self.notebooks["baselines"], params, (), n_cells))
        return runs

    def embeddings(self, backbones: list[str], existing: set[str],
                   seed: int | None = None) -> list[Run]:
        section = self.spec["embeddings"]
        fraction = self._fractions("finetuning")[0]
        runs = []
        for pair in section.get("compare") or []:
            backbone, names = _comparison(pair, backbones, self.where)
            parents = tuple(finetune_run(backbone, s, fraction, seed) for s in names)
            missing = [p for p in parents if p not in existing]
            if missing:
                raise GridError(f"{self.where}: embeddings compare {names} for {backbone}, but the "
                                f"grid has no run {missing}: add the scenarios to 'scenarios'")
            # cells: each run's first complete cell unless the section names them (the
            # notebook's own default names the demo's cell)
            params = {**self.common["embeddings"], "cells": [], **self._section("embeddings"),
                      "runs": [self.full(p) for p in parents]}
            name = f"embeddings/{backbone}-" + "-vs-".join(slug(s) for s in names) + _tag(seed)
            runs.append(Run(name, "embeddings", self.notebooks["embeddings"], params, parents))
        return runs


def _comparison(pair, backbones: list[str], where: str) -> tuple[str, list[str]]:
    if not isinstance(pair, dict) or set(pair) != {"backbone", "scenarios"}:
        raise GridError(f"{where}: each embeddings.compare entry is "
                        f"{{backbone: ..., scenarios: [..., ...]}}, got {pair!r}")
    _check_names([pair["backbone"]], backbones, "embeddings backbone", where)
    _check_names(pair["scenarios"], list(SCENARIOS), "embeddings scenario", where)
    return pair["backbone"], list(pair["scenarios"])


def _n_cells(params: dict, axes: tuple[str, ...]) -> int:
    """Cells of one run: the product of its list axes (an axis left to the notebook counts 1)."""
    n = 1
    for axis in axes:
        value = params.get(axis)
        n *= len(value) if isinstance(value, list) else 1
    return n


def _seed(seed: int | None) -> dict:
    """The ``seed`` parameter the grid sets for pretraining seed ``seed`` (None: none)."""
    return {} if seed is None else {"seed": seed}


def _tag(seed: int | None) -> str:
    """``-p<seed>`` in run names, empty for pretraining seed 0 (and None): today's names."""
    return f"-p{seed}" if seed else ""


def encoder_run(backbone: str, scenario: str, seed: int | None = None) -> str:
    """Run name of the encoder of ``scenario``: ``pretraining/ts2vec-ecg``, ``regularization/...``;
    ``pretraining/ts2vec-ecg-p1`` for pretraining seed 1."""
    stage = "regularization" if scenario_names.get(scenario).steps else "pretraining"
    return f"{stage}/{backbone}-{slug(scenario)}{_tag(seed)}"


def finetune_run(backbone: str, scenario: str, fraction: float, seed: int | None = None) -> str:
    return f"finetuning/{backbone}-{slug(scenario)}{_tag(seed)}-{fraction_tag(fraction)}"
