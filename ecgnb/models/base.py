"""The one encoder API shared by every SSL backbone: construct -> ``fit`` -> ``encode``.

Array layout at the boundary: ``x`` is float32 ``[N, 1, T]`` (univariate windows).
``encode`` returns ``[N, D]``; ``features`` returns the time-resolved ``[N, D', T']``.

A backbone subclasses :class:`Encoder` and provides
- ``Config``: a dataclass with the study's defaults (docs/deviations.md, "Backbones"),
- ``_build(n_timesteps)``: create ``self.network_`` (a :class:`Network`) and any training-only
  modules, registered in ``self.modules_`` (name -> nn.Module) so that they are saved,
- ``_loss(xb, generator, device_generator)``: the SSL loss of one batch (``xb`` on the device,
  ``[B, 1, T]``); ``generator`` (CPU) for the draws whose values the host needs (lengths, choices),
  ``device_generator`` for the tensors of draws used on the device (:mod:`ecgnb.models.device`),
- optionally ``_optimizer(params, lr)``, ``_after_step()`` (e.g. weight averaging),
  ``_after_epoch(x_t, batch_size)`` (e.g. TS-TCC's clean batch-norm statistics) and
  ``_inference_network()`` (the network used by ``encode``; TS2Vec returns its averaged copy).

Numerics (:mod:`ecgnb.models.precision`): ``fit``, ``evaluate_loss``, ``encode`` and ``features`` run
with denormals flushed when the config's ``flush_denormal`` is on (restored afterwards), with the
config's ``cudnn_benchmark`` and ``allow_tf32``, and under the autocast of the config's
``precision`` (``bf16``) or, on CUDA, ``use_amp``.

A training step does not wait for the device: the corpus is placed once per fit
(:class:`~ecgnb.models.device.Corpus`), random tensors are drawn on the device, and the batch
losses are summed on the device (float64) and read once per epoch, as is the validation loss.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ecgnb.config import pick_device, reject_unknown, torch_generator
from ecgnb.files import atomic_write
from ecgnb.models.checkpoint import (CHECKPOINT_EVERY_S, Checkpointer, array_checksum,
                                    modules_checksum)
from ecgnb.models.device import Corpus, device_generator, generators
from ecgnb.models.loop import TrainingLoop
from ecgnb.models.precision import autocast, check_precision, numerics, numerics_record


ENCODER_FORMAT = "ecgnb-encoder-2"  # tensors and plain values, read with weights_only=True


def plain(value):
    """``value`` as plain values (numbers, strings, booleans, None, lists, tuples, dicts): what a
    file read with ``torch.load(weights_only=True)`` may hold beside tensors. NumPy scalars and
    arrays become numbers and lists; anything else its text."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, (np.generic, np.ndarray)):  # before float: np.float64 is a float
        return value.tolist()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded as written (wrong backbone, keys or shapes)."""


@dataclasses.dataclass
class FitSettings:
    """How a backbone trains, the fields every backbone shares (its ``Config`` holds only what is
    its own): the learning rate, batch size and epochs of :meth:`Encoder.fit`, gradient clipping
    (None: none) and the numerics (:mod:`ecgnb.models.precision`): ``use_amp`` (float16 autocast
    on CUDA), ``precision`` (``fp32`` | ``bf16``), ``flush_denormal`` (on the CPU),
    ``cudnn_benchmark``, ``allow_tf32`` and ``cudnn_deterministic`` (cuDNN on CUDA). A backbone's
    own defaults are its ``FIT_DEFAULTS`` (:meth:`Encoder.default_settings`)."""

    lr: float = 1e-3
    batch_size: int = 64
    n_epochs: int = 600
    grad_clip: float | None = None
    use_amp: bool = True
    precision: str = "fp32"
    flush_denormal: bool = True
    cudnn_benchmark: bool = False
    allow_tf32: bool = False
    cudnn_deterministic: bool = False

    def __post_init__(self):
        check_precision(self.precision)


FIT_FIELDS = tuple(f.name for f in dataclasses.fields(FitSettings))


class Network(nn.Module):
    """A trainable encoder network: ``forward(x [B,1,T]) -> features [B, D', T']``.

    ``pool(features) -> [B, D]`` turns features into the instance embedding. Subclasses set
    ``embedding_dim`` (D) and ``feature_dim`` (D'). Heads and fine-tuning use only this interface.
    """

    embedding_dim: int
    feature_dim: int

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        return features.amax(dim=-1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self(x))


class Encoder:
    """Base class of the SSL backbones (see module docstring)."""

    name: ClassVar[str] = ""
    Config: ClassVar[type] = object
    FIT_DEFAULTS: ClassVar[dict] = {}  # this backbone's values of FitSettings' fields
    reads_any_length: ClassVar[bool] = False  # False: built for its pretraining windows' length

    def __init__(self, config=None, device: str | None = None, seed: int = 0, verbose: bool = True,
                 settings: FitSettings | None = None):
        self.config = config if config is not None else self.Config()
        self.settings = settings if settings is not None else self.default_settings()
        self.device = device
        self.seed = seed
        self.verbose = verbose

    # ----------------------------------------------------------------- hooks for subclasses
    def _build(self, n_timesteps: int) -> None:
        raise NotImplementedError

    def _loss(self, xb: torch.Tensor, generator: torch.Generator,
              device_generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def _optimizer(self, params, lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=lr)

    def _after_step(self) -> None:
        """Called after every optimiser step (weight averaging lives here)."""

    def _after_epoch(self, x_t: torch.Tensor, batch_size: int) -> None:
        """Called after every epoch with the clean training windows ``[N, 1, T]`` (on the device
        or in host memory, as the fit placed them)."""

    def _inference_network(self) -> Network:
        return self.network_

    # ----------------------------------------------------------------- public API
    @classmethod
    def default_settings(cls, **overrides) -> FitSettings:
        """This backbone's :class:`FitSettings` (its ``FIT_DEFAULTS``), with ``overrides``."""
        return FitSettings(**{**cls.FIT_DEFAULTS, **overrides})

    def set_params(self, **params) -> "Encoder":
        """Replace fields of ``config`` or ``settings`` (scikit-learn's ``set_params``), e.g. the
        learning rate a continuation trains with, so that a saved checkpoint records it; unknown
        names raise."""
        shared = {k: v for k, v in params.items() if k in FIT_FIELDS}
        own = {k: v for k, v in params.items() if k not in FIT_FIELDS}
        self.settings = dataclasses.replace(self.settings, **shared)
        self.config = dataclasses.replace(self.config, **own)
        return self

    @property
    def device_(self) -> torch.device:
        return pick_device(self.device)

    @property
    def is_built(self) -> bool:
        return hasattr(self, "network_")

    def build(self, n_timesteps: int) -> "Encoder":
        """Create the networks for inputs of length ``n_timesteps`` (seeded, idempotent)."""
        if not self.is_built:
            torch.manual_seed(self.seed)  # initial weights only; every later draw uses a generator
            self.modules_: dict[str, nn.Module] = {}
            self.n_timesteps_ = int(n_timesteps)
            self._build(self.n_timesteps_)
            self.modules_.setdefault("network", self.network_)
            for module in self.modules_.values():
                module.to(self.device_)
            self.history_: list[dict] = []
            self.lineage: list[dict] = []
        return self

    def fit(self, x: np.ndarray, n_epochs: int | None = None, batch_size: int | None = None,
            lr: float | None = None, x_val: np.ndarray | None = None, seed: int | None = None,
            verbose: bool | None = None, callback=None, checkpoint=None,
            checkpoint_every_s: float = CHECKPOINT_EVERY_S) -> "Encoder":
        """Self-supervised training on ``x`` ``[N, 1, T]``; a fresh optimiser on every call.

        Calling ``fit`` again continues from the current weights (a continuation).
        ``n_epochs``, ``batch_size`` and ``lr`` default to the config's and apply to this call
        only: ``fit`` never changes ``config`` (:meth:`set_params` does). Per-epoch losses are
        appended to ``history_``; ``callback(self, record)`` runs after every epoch (checkpoint
        selection uses it).

        ``checkpoint``: a file (``.pt``) that holds the whole training state
        (:mod:`ecgnb.models.checkpoint`), written every ``checkpoint_every_s`` seconds of
        training at the next batch or epoch end. When it holds a checkpoint of this same fit, the
        fit resumes from it and ends with the weights an uninterrupted fit would have;
        ``checkpoint_`` then says where it resumed (``resumed_from``) and what writing cost.
        A callback whose owner has ``state_dict``/``load_state_dict`` is checkpointed with it.
        ``fit_record_`` says where the corpus lived and the device generator's seed.

        The epoch's ``loss`` is the mean of its batch losses, summed on the device in float64:
        it can differ from a mean of per-batch Python floats in the last digit, the weights not.
        """
        x = check_windows(x)
        self.build(x.shape[-1])
        n_epochs = self.settings.n_epochs if n_epochs is None else n_epochs
        batch_size = self.settings.batch_size if batch_size is None else batch_size
        lr = self.settings.lr if lr is None else lr
        seed = self.seed if seed is None else seed
        gen = torch_generator(seed)
        on_device, device_seed = device_generator(gen, self.device_)
        params = [p for m in self.modules_.values() for p in m.parameters() if p.requires_grad]
        optimizer = self._optimizer(params, lr)
        use_amp = (self.device_.type == "cuda" and self.settings.use_amp
                   and self.settings.precision == "fp32")  # float16 needs the scaler, bf16 not
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        corpus = Corpus(torch.from_numpy(x), self.device_)
        self.fit_record_ = {"corpus": corpus.where, "device_seed": device_seed,
                            **numerics_record(self.device_, self.settings, use_amp)}
        self.checkpoint_ = None if checkpoint is None else Checkpointer(
            checkpoint, self._fingerprint(x, x_val, n_epochs, batch_size, lr, seed),
            checkpoint_every_s)
        parts = {**{f"module.{k}": m for k, m in self.modules_.items()},
                 "optimizer": optimizer, "scaler": scaler}
        loop = TrainingLoop(n_epochs, parts, self.history_, generators(gen, on_device),
                            self.checkpoint_, callbacks=[] if callback is None else [
                                lambda record: callback(self, record)],
                            desc=f"{self.name} fit", show=("loss",),
                            verbose=self.verbose if verbose is None else verbose)
        if callback is not None:  # a stateful callback's owner is checkpointed with the fit
            owner = getattr(callback, "__self__", callback)
            if hasattr(owner, "state_dict") and hasattr(owner, "load_state_dict"):
                loop.parts["callback"] = owner

        def run_epoch(epoch: int, position, after_batch) -> dict:
            start = time.perf_counter()
            loss_sum, n_losses = self._train_epoch(corpus, batch_size, optimizer, scaler,
                                                   (gen, on_device), position, after_batch)
            self._after_epoch(corpus.x, batch_size)
            record = {"epoch": len(self.history_) + 1,
                      "loss": loss_sum.item() / n_losses if n_losses else float("nan"),
                      "seconds": time.perf_counter() - start}
            if x_val is not None:
                record["val_loss"] = self.evaluate_loss(x_val, batch_size=batch_size, seed=seed)
            return record

        with numerics(self.device_, self.settings):
            loop.run(run_epoch, mid_epoch=True)
        return self

    def _fingerprint(self, x, x_val, n_epochs, batch_size, lr, seed) -> dict:
        """What makes two fits the same fit (a checkpoint resumes only its own fit)."""
        return {"backbone": self.name, "config": dataclasses.asdict(self.config),
                "settings": dataclasses.asdict(self.settings), "n_epochs": n_epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                "x": array_checksum(x), "x_val": None if x_val is None else array_checksum(
                    check_windows(x_val)), "start": modules_checksum(self.modules_),
                "n_history": len(self.history_), "device": self.device_.type}

    def _train_epoch(self, corpus: Corpus, batch_size, optimizer, scaler, draws, position=None,
                     after_batch=None) -> tuple[torch.Tensor, int]:
        """One epoch: ``(sum of the batch losses, float64 on the device; number of batches)``.
        ``draws``: the (host, device) generators; ``position`` (``order``, ``next``,
        ``loss_sum``, ``n_losses``) resumes one part-way."""
        for module in self.modules_.values():
            module.train()
        host, on_device = draws
        if position is None:
            order, begin, n_losses = torch.randperm(len(corpus.x), generator=host), 0, 0
            loss_sum = torch.zeros((), dtype=torch.float64, device=self.device_)
        else:
            order, begin, n_losses = position["order"], position["next"], position["n_losses"]
            loss_sum = position["loss_sum"].to(self.device_)
        order_at = corpus.indices(order)
        for start in range(begin, len(order), batch_size):
            idx = order_at[start:start + batch_size]
            if len(idx) < 2:  # contrastive losses need a pair
                continue
            xb = corpus.batch(idx)
            with self._autocast():
                loss = self._loss(xb, host, on_device)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            self._clip(optimizer, scaler)
            scaler.step(optimizer)
            scaler.update()
            self._after_step()
            loss_sum += loss.detach().double()
            n_losses += 1
            if after_batch is not None:
                after_batch({"order": order, "next": start + batch_size, "loss_sum": loss_sum,
                             "n_losses": n_losses})
        return loss_sum, n_losses

    def _autocast(self, training: bool = True):
        """The autocast of the config's ``precision`` on this device; in training on CUDA, also
        ``use_amp`` (float16 mixed precision; encoding and evaluation stay float32 then)."""
        return autocast(self.device_, self.settings.precision, training and self.settings.use_amp)

    def _clip(self, optimizer, scaler) -> None:
        clip = self.settings.grad_clip
        if clip:
            scaler.unscale_(optimizer)
            params = [p for g in optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, clip)

    @torch.no_grad()
    def evaluate_loss(self, x: np.ndarray, batch_size: int | None = None, seed: int = 0) -> float:
        """Mean SSL loss on ``x`` with training-mode stochasticity drawn from ``seed``; the batch
        losses are summed on the device and read once."""
        corpus = Corpus(torch.from_numpy(check_windows(x)), self.device_)
        batch_size = batch_size or self.settings.batch_size
        gen = torch_generator(seed)
        on_device, _ = device_generator(gen, self.device_)
        for module in self.modules_.values():
            module.eval()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device_)
        n_losses = 0
        with numerics(self.device_, self.settings), self._autocast(training=False):
            for start in range(0, len(corpus.x), batch_size):
                if len(corpus.x[start:start + batch_size]) > 1:
                    xb = corpus.slice(start, start + batch_size)
                    loss_sum += self._loss(xb, gen, on_device).double()
                    n_losses += 1
        return loss_sum.item() / n_losses if n_losses else float("nan")

    @torch.no_grad()
    def features(self, x: np.ndarray, batch_size: int = 256, dtype=np.float32) -> np.ndarray:
        """Time-resolved features ``[N, D', T']`` from the inference network (eval mode), written
        batch by batch into one array of ``dtype`` (float32; float16 halves the memory and keeps
        about 3 significant digits)."""
        return self._run(x, batch_size, lambda net, xb: net(xb), dtype)

    @torch.no_grad()
    def encode(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Instance embeddings ``[N, D]`` from the inference network (eval mode)."""
        return self._run(x, batch_size, lambda net, xb: net.embed(xb))

    def _run(self, x, batch_size, fn, dtype=np.float32) -> np.ndarray:
        x = check_windows(x)
        self.build(x.shape[-1])
        net = self._inference_network()
        was_training = net.training
        net.eval()
        out = None
        with numerics(self.device_, self.settings), self._autocast(training=False):
            for start in range(0, len(x), batch_size):
                xb = torch.from_numpy(x[start:start + batch_size]).to(self.device_)
                value = fn(net, xb).float().cpu()
                if out is None:  # one array for all batches: no list of parts, no concatenation
                    out = np.empty((len(x), *value.shape[1:]), dtype=dtype)
                out[start:start + len(value)] = value.numpy()
        net.train(was_training)
        return out

    def begin_continuation(self, mode: str = "genuine") -> str:
        """Prepare a continuation (docs/deviations.md, row 19); returns what it starts from.
        ``mode="study"`` reproduces the study's loading where it differs (TS2Vec only)."""
        check_continuation(mode)
        return "training weights"

    def training_record(self) -> dict:
        """What a ``fit`` trains with, for the lineage: the optimiser (class, lr, weight decay,
        betas), gradient clipping and the numerics (``use_amp``: float16 autocast on CUDA;
        ``precision``; ``cudnn_benchmark``, ``allow_tf32``); after a fit, also its
        ``fit_record_`` (device, autocast in effect, corpus placement, device generator seed) and,
        for a checkpointed fit, how many checkpoints it wrote and the seconds that took."""
        probe = self._optimizer([torch.zeros(1, requires_grad=True)], self.settings.lr)
        record = {"optimizer": type(probe).__name__,
                  **{k: probe.defaults[k] for k in ("lr", "weight_decay", "betas")
                     if k in probe.defaults}}
        settings = {k: getattr(self.settings, k) for k in
                    ("grad_clip", "use_amp", "precision", "cudnn_benchmark", "allow_tf32")}
        return {**record, **settings, **getattr(self, "fit_record_", {}),
                **self._checkpoint_record()}

    def _checkpoint_record(self) -> dict:
        checkpoint = getattr(self, "checkpoint_", None)
        if checkpoint is None:
            return {}
        return {"checkpoint_writes": checkpoint.n_writes,
                "checkpoint_s": round(checkpoint.seconds_writing, 4)}

    def trainable_network(self) -> Network:
        """A fresh copy of the inference network to fine-tune (never the averaged copy itself)."""
        return copy.deepcopy(self._inference_network()).train()

    def use_finetune_mask(self, network: Network, mode: str, generator: torch.Generator) -> None:
        """Let ``network`` (from :meth:`trainable_network`) draw the backbone's training mask in
        training mode (``mode="binomial"``, from ``generator``); ``"none"``: no mask. Backbones
        without a timestamp mask ignore it."""

    # ----------------------------------------------------------------- persistence
    def state(self) -> dict[str, Any]:
        return {
            "format": ENCODER_FORMAT,
            "backbone": self.name,
            "config": dataclasses.asdict(self.config),
            "settings": dataclasses.asdict(self.settings),
            "seed": self.seed,
            "n_timesteps": self.n_timesteps_,
            "modules": {k: m.state_dict() for k, m in self.modules_.items()},
            "history": plain(self.history_),
            "lineage": plain(self.lineage),
        }

    def save(self, path) -> Path:
        """Write weights + config + history + lineage to ``path`` (a ``.pt`` file)."""
        path = Path(path)
        with atomic_write(path) as tmp:
            torch.save(self.state(), tmp)
        return path

    def state_dict(self) -> dict[str, dict]:
        """Every module's ``state_dict()`` by module name (references, as ``nn.Module``'s are:
        :class:`~ecgnb.models.best.BestState` deep-copies what it keeps)."""
        return {k: m.state_dict() for k, m in self.modules_.items()}

    def load_state_dict(self, state: dict[str, dict]) -> None:
        """Load the weights of :meth:`state_dict` back (strict: every module, every key)."""
        for name, module in self.modules_.items():
            module.load_state_dict(state[name], strict=True)

    def weights_hash(self) -> str:
        """sha256 of the saved weights (stable identity for lineage records)."""
        h = hashlib.sha256()
        for name, module in sorted(self.modules_.items()):
            for key, value in sorted(module.state_dict().items()):
                h.update(f"{name}.{key}".encode())
                h.update(value.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


CONTINUATIONS = ("genuine", "study")


def check_continuation(mode: str) -> str:
    if mode not in CONTINUATIONS:
        raise ValueError(f"continuation must be one of {CONTINUATIONS}, got '{mode}'")
    return mode


def check_windows(x) -> np.ndarray:
    """Validate the boundary layout: float32 ``[N, 1, T]`` with finite values."""
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[1] != 1:
        raise ValueError(f"expected windows of shape [N, 1, T], got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("windows contain NaN or inf values")
    return np.ascontiguousarray(x, dtype=np.float32)


def split_settings(state: dict) -> tuple[dict, dict]:
    """A saved encoder's ``(config, settings)``; a file that has no ``settings`` holds the
    training settings in its ``config`` (one dataclass per backbone), and they are split off."""
    if "settings" in state:
        return dict(state["config"]), dict(state["settings"])
    config = {k: v for k, v in state["config"].items() if k not in FIT_FIELDS}
    return config, {k: v for k, v in state["config"].items() if k in FIT_FIELDS}


def restore(cls: type[Encoder], state: dict, device: str | None = None, path="<memory>") -> Encoder:
    """Rebuild an encoder from :meth:`Encoder.state` with strict weight loading."""
    config, settings = split_settings(state)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    reject_unknown(config, fields, where=f"config of {path}")
    reject_unknown(settings, set(FIT_FIELDS), where=f"settings of {path}")
    enc = cls(cls.Config(**config), device=device, seed=state["seed"], verbose=False,
              settings=cls.default_settings(**settings))
    enc.build(state["n_timesteps"])
    if set(state["modules"]) != set(enc.modules_):
        raise CheckpointError(f"{path}: modules {sorted(state['modules'])} != {sorted(enc.modules_)}")
    for name, module in enc.modules_.items():
        try:
            module.load_state_dict(state["modules"][name], strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: weights of '{name}' do not fit the {cls.name} "
                                  f"architecture: {exc}") from exc
    enc.history_ = list(state["history"])
    enc.lineage = list(state["lineage"])
    return enc
