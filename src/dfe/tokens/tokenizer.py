"""The tokenizer: psi -> K discrete expression tokens per frame, and back.

psi -> standardise -> encoder -> latent z -> K words from ONE codebook shared by all K levels
    (greedy residual search) -> decoder on the summed words -> psi_hat.

Two quantizers (:mod:`dfe.tokens.networks`): ``shape-gain`` (the default; linear encoder and
decoder, a token is an action at one of a few intensities, :mod:`dfe.tokens.dictionary`) and
``rvq-vae`` (a patch transformer encoder and vector-quantize-pytorch's ResidualVQ). With a linear
decoder psi_hat = b + W (e_{c_1} + ... + e_{c_K}) (then un-standardised), so every code c has one
exact deformation ``W e_c`` (:meth:`Tokenizer.decode_code`) and any prefix of levels is an exact
coarser reconstruction (:meth:`Tokenizer.decode_prefix`).

:meth:`Tokenizer.fit` runs the steps below it one by one: check psi (:func:`training_psi`), the
config (:func:`training_config`), the held-out split (:func:`split_groups`), the standardiser, the
training (:func:`fit_shape_gain_model` or :func:`train_rvq_vae`) and the summary
(:func:`training_summary`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import torch
from torch import nn

from dfe.errors import DfeError
from dfe.extraction.expression import PSI_KINDS, PSI_VERSION
from dfe.extraction.mesh import TOPOLOGY_ID
from dfe.progress import Progress
from dfe.tokens.config import TokenizerConfig
from dfe.tokens.dictionary import actions_for_data, fit_shape_gain
from dfe.tokens.networks import RVQVAE, ShapeGainModel, TokenModel, make_patches
from dfe.version import __version__

log = logging.getLogger(__name__)

FORMAT = "dfe-tokenizer"
FORMAT_VERSION = 1
MIN_STEPS = 2000  # rvq-vae: optimizer steps a fit gets at least (small corpora run more epochs)


def resolve_device(name: str | torch.device = "cpu") -> torch.device:
    """cpu, cuda (the first GPU) or auto (cuda when there is one); a sentence when cuda is missing."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: this torch ({torch.__version__}) sees no CUDA GPU; use --device cpu or auto")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, not {name!r}")
    return torch.device(name)


class ModelError(DfeError, RuntimeError):
    """A model file that cannot be used; the message is one sentence for the user."""


@dataclass
class Standardiser:
    """psi -> model units. Geometry: one global scale (anchor vertices barely move; per-coordinate
    z-scores would amplify their noise), zero kept as the neutral face. Vector kinds: z-scores."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, psi: np.ndarray, kind: str, rows: np.ndarray | None = None, chunk: int = 65536) -> "Standardiser":
        """From ``psi[rows]`` (all rows by default). Large corpora are summed chunk by chunk in
        float64 instead of copying the rows (the same statistics, no second copy of psi)."""
        if rows is None or len(rows) * psi.shape[1] <= 2e8:
            part = psi if rows is None else psi[rows]
            if kind == "geometry":
                return cls(np.zeros(psi.shape[1], np.float32), np.full(psi.shape[1], part.std() + 1e-8, np.float32))
            return cls(part.mean(0).astype(np.float32), (part.std(0) + 1e-6).astype(np.float32))
        total = np.zeros(psi.shape[1])
        squares = np.zeros(psi.shape[1])
        for i in range(0, len(rows), chunk):
            block = psi[rows[i:i + chunk]].astype(np.float64)
            total += block.sum(0)
            squares += (block**2).sum(0)
        n = len(rows)
        mean, var = total / n, squares / n - (total / n) ** 2
        if kind == "geometry":
            spread = np.sqrt(squares.sum() / (n * psi.shape[1]) - (total.sum() / (n * psi.shape[1])) ** 2)
            return cls(np.zeros(psi.shape[1], np.float32), np.full(psi.shape[1], spread + 1e-8, np.float32))
        return cls(mean.astype(np.float32), (np.sqrt(np.maximum(var, 0)) + 1e-6).astype(np.float32))

    def forward(self, psi: np.ndarray, chunk: int = 65536) -> np.ndarray:
        out = np.empty(np.shape(psi), dtype=np.float32)  # chunked: no full-size temporaries for big corpora
        for i in range(0, len(out), chunk):
            out[i:i + chunk] = (np.asarray(psi[i:i + chunk], dtype=np.float32) - self.mean) / self.scale
        return out

    def inverse(self, x: np.ndarray) -> np.ndarray:
        return (x * self.scale + self.mean).astype(np.float32)


@dataclass
class TrainingSummary:
    n_train: int = 0
    n_val: int = 0
    epochs_run: int = 0
    best_epoch: int = 0
    val_mse: float = float("nan")  # standardised units
    val_cosine: float = float("nan")
    perplexity: float = float("nan")
    dead_code_share: float = float("nan")
    level_usage: list = field(default_factory=list)  # distinct codes used per level
    seconds: float = 0.0
    torch_threads: int = 0  # fits are bit-identical for a given seed AND thread count
    data: dict = field(default_factory=dict)  # what it was trained on (free text for provenance)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    num = (a * b).sum(1)
    return num / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def codebook_stats(tokens: np.ndarray, codebook_size: int) -> dict:
    """Perplexity of the pooled token distribution, dead-code share, distinct codes per level."""
    counts = np.bincount(tokens.reshape(-1), minlength=codebook_size).astype(float)
    p = counts / max(counts.sum(), 1)
    nz = p[p > 0]
    return {
        "perplexity": float(np.exp(-(nz * np.log(nz)).sum())) if len(nz) else 0.0,
        "dead_code_share": float((counts == 0).mean()),
        "level_usage": [int(len(np.unique(tokens[:, k]))) for k in range(tokens.shape[1])],
    }


class Split(NamedTuple):
    """Row indices of a fit's training and held-out frames."""

    train: np.ndarray
    val: np.ndarray


def split_groups(n: int, groups: np.ndarray | None, val_fraction: float, seed: int) -> Split:
    """Held-out split by group (person/video) when groups are given, else by row."""
    rng = np.random.default_rng(seed)
    if groups is None:
        order = rng.permutation(n)
        n_val = max(1, int(round(val_fraction * n))) if n > 1 else 0
        return Split(np.sort(order[n_val:]), np.sort(order[:n_val]))
    groups = np.asarray(groups)
    uniq = np.unique(groups)
    if len(uniq) < 2:
        log.warning("only one group: holding out rows at random instead of by group")
        return split_groups(n, None, val_fraction, seed)
    rng.shuffle(uniq)
    sizes = {g: int((groups == g).sum()) for g in uniq}
    target = val_fraction * n
    val_groups, count = [], 0
    for g in uniq:  # shuffled groups, skipping any that would overshoot the held-out share by half
        if count >= target:
            break
        if count + sizes[g] <= 1.5 * target:
            val_groups.append(g)
            count += sizes[g]
    if not val_groups:
        val_groups = [min(uniq, key=lambda g: sizes[g])]
    is_val = np.isin(groups, val_groups)
    return Split(np.flatnonzero(~is_val), np.flatnonzero(is_val))


def tied_keys(model: nn.Module) -> set[str]:
    """State-dict keys naming a tensor that an earlier key already names (ResidualVQ's one shared
    codebook appears under every level): a model file stores each tensor once."""
    seen: set[int] = set()
    tied = set()
    for key, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            tied.add(key)
        seen.add(id(tensor))
    return tied


# ---------------------------------------------------------------------- training, step by step
def training_psi(psi: np.ndarray) -> np.ndarray:
    """psi as a float32 (n, D) array with n >= 10 and every value finite; a sentence otherwise."""
    psi = np.asarray(psi, dtype=np.float32)
    if psi.ndim != 2 or len(psi) < 10:
        raise ValueError(f"need an (n, D) psi array with n >= 10, got shape {psi.shape}")
    if not all(np.isfinite(psi[i:i + 65536]).all() for i in range(0, len(psi), 65536)):
        raise ValueError("psi contains NaN or inf: pass successful frames only (success == 1)")
    return psi


def training_config(config: TokenizerConfig | None, knobs: dict, dim: int) -> TokenizerConfig:
    """``config`` (the defaults when None) with ``knobs`` changed and the data's ``dim``; a sentence
    for an unknown knob or a psi kind that does not have ``dim`` values."""
    if knobs.get("dim", dim) != dim:
        raise ValueError(f"dim={knobs['dim']} was given but the data has {dim} values per frame")
    cfg = (config or TokenizerConfig()).updated(**{**knobs, "dim": dim})
    expected = PSI_KINDS.get(cfg.psi_kind)
    if expected is not None and expected != cfg.dim:
        raise ValueError(f"psi kind {cfg.psi_kind!r} has {expected} values, data has {cfg.dim}")
    return cfg


@dataclass
class Trained:
    """A trained model, the config it was trained with (small corpora: fewer actions, more epochs)
    and how long its training ran."""

    config: TokenizerConfig
    model: TokenModel
    epochs_run: int
    best_epoch: int


def fit_shape_gain_model(cfg: TokenizerConfig, x_train: np.ndarray, progress: bool = False) -> Trained:
    """Principal directions of the standardised training psi (uncentred: zero stays the neutral
    face), then :func:`dfe.tokens.dictionary.fit_shape_gain` in that latent space."""
    n_actions = actions_for_data(len(x_train), cfg.n_actions)
    if n_actions < cfg.n_actions:
        log.warning("%d training frames are too few for %d actions x %d gains: using %d actions "
                    "(%d codes); pass --codebook-size %d or more data", len(x_train), cfg.n_actions,
                    cfg.gain_levels, n_actions, n_actions * cfg.gain_levels, n_actions * cfg.gain_levels)
    cfg = replace(cfg, codebook_size=n_actions * cfg.gain_levels, latent_dim=int(min(cfg.latent_dim, len(x_train), cfg.dim)))
    _, _, vt = np.linalg.svd(x_train[:: max(1, len(x_train) // 20000)], full_matrices=False)
    basis = vt[:cfg.latent_dim].astype(np.float32)  # (L, D) orthonormal rows
    bar = Progress(cfg.lloyd_iters, "fit", "iteration", enabled=progress)

    def tick(relative_error: float) -> None:
        bar.note(f"relative error {relative_error:.4f}")
        bar.update(1)

    book, stats = fit_shape_gain(x_train @ basis.T, levels=cfg.levels, n_actions=n_actions,
                                 n_gains=cfg.gain_levels, iters=cfg.lloyd_iters,
                                 merge_cosine=cfg.merge_cosine, seed=cfg.seed, update=cfg.codebook_update,
                                 refine_passes=cfg.refine_passes, distinct_actions=cfg.distinct_actions,
                                 on_iteration=tick)
    bar.close()
    log.info("shape-gain dictionary: %s", {k: v for k, v in stats.items() if k != "relative_error"})
    model = ShapeGainModel(cfg)
    with torch.no_grad():
        model.encoder.weight.copy_(torch.from_numpy(basis))
        model.decoder.weight.copy_(torch.from_numpy(basis.T.copy()))
        model.decoder.bias.zero_()
        model.directions.copy_(torch.from_numpy(book.directions))
        model.gains.copy_(torch.from_numpy(book.gains))
    return Trained(cfg, model, cfg.lloyd_iters, cfg.lloyd_iters)


@dataclass
class Schedule:
    """How an rvq-vae fit steps through its training frames."""

    batch_size: int
    steps_per_epoch: int
    epochs: int
    patience: int  # epochs without a better held-out MSE before it stops


def rvq_schedule(cfg: TokenizerConfig, n_train: int) -> Schedule:
    """The configured schedule, except that small corpora get batches small enough for ~16 optimizer
    steps an epoch and enough epochs for MIN_STEPS steps in all (a 600-frame corpus got 640 steps
    before dfe 0.4)."""
    batch_size = int(min(cfg.batch_size, max(32, n_train // 16)))
    steps_per_epoch = max(1, math.ceil(n_train / batch_size))
    if cfg.epochs * steps_per_epoch >= MIN_STEPS:
        return Schedule(batch_size, steps_per_epoch, cfg.epochs, cfg.patience)
    epochs = int(min(10 * cfg.epochs, math.ceil(MIN_STEPS / steps_per_epoch)))
    log.info("small corpus: %d epochs of %d steps", epochs, steps_per_epoch)
    return Schedule(batch_size, steps_per_epoch, epochs, max(cfg.patience, epochs // 8))


@contextmanager
def seeded_torch(seed: int, device: torch.device) -> Iterator[None]:
    """torch's random state seeded with ``seed`` inside the block and given back unchanged after it:
    weight init and ResidualVQ's k-means init and dead-code replacement draw from it, and none of
    them takes a generator."""
    cuda = list(range(torch.cuda.device_count())) if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


def train_rvq_vae(cfg: TokenizerConfig, x_all: torch.Tensor, split: Split, device: torch.device,
                  progress: bool = False) -> Trained:
    """Train the rvq-vae on the standardised rows ``x_all[split.train]`` (moved to ``device`` batch
    by batch); keep the epoch with the best held-out MSE, stop after ``patience`` epochs without one."""
    schedule = rvq_schedule(cfg, len(split.train))
    cfg = replace(cfg, epochs=schedule.epochs, patience=schedule.patience)
    train = torch.as_tensor(split.train)
    held = torch.as_tensor(split.val if len(split.val) else split.train)
    with seeded_torch(cfg.seed, device):
        model = RVQVAE(cfg, make_patches(cfg)).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * schedule.steps_per_epoch)
        shuffle = torch.Generator().manual_seed(cfg.seed)
        with torch.no_grad():  # ResidualVQ's k-means init on a large sample, not just the first batch
            model.train()
            model.rvq(model.encoder(x_all[train[torch.randperm(len(train), generator=shuffle)[:4096]]].to(device)))
        best, best_state, best_epoch, stale = float("inf"), None, 0, 0
        bar = Progress(cfg.epochs, "fit", "epoch", enabled=progress)
        epochs_run = 0
        for epoch in range(cfg.epochs):
            order = train[torch.randperm(len(train), generator=shuffle)]
            train_epoch(model, opt, sched, x_all, order, schedule, device, cfg.sparsity_weight)
            epochs_run = epoch + 1
            val = held_out_mse(model, x_all, held, device)
            bar.update(1)
            bar.note(f"held-out MSE {val:.4f}")
            if val < best - 1e-5:
                best, best_epoch, stale = val, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                continue
            stale += 1
            if stale >= cfg.patience:
                log.info("early stop at epoch %d (best %d)", epochs_run, best_epoch + 1)
                bar.note(f"held-out MSE {best:.4f} at epoch {best_epoch + 1}; stopped early, no gain in {stale} epochs")
                break
        bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return Trained(cfg, model, epochs_run, best_epoch + 1)


def train_epoch(model: RVQVAE, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
                x_all: torch.Tensor, order: torch.Tensor, schedule: Schedule, device: torch.device,
                sparsity_weight: float) -> None:
    """One pass over the training rows in ``order``: reconstruction MSE + commitment loss, plus
    ``sparsity_weight`` x the mean absolute code deformation (sparse, local codes)."""
    model.train()
    size = schedule.batch_size
    for i in range(schedule.steps_per_epoch):
        xb = x_all[order[i * size : (i + 1) * size]].to(device, non_blocking=True)
        if len(xb) < 2:
            continue
        recon, _, commit = model(xb)
        loss = torch.mean((recon - xb) ** 2) + commit
        if sparsity_weight > 0:
            loss = loss + sparsity_weight * model.deformations().abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


@torch.no_grad()
def held_out_mse(model: RVQVAE, x_all: torch.Tensor, rows: torch.Tensor, device: torch.device) -> float:
    """Reconstruction MSE of ``x_all[rows]`` (standardised units) through the model in eval mode."""
    model.eval()
    total = 0.0
    for i in range(0, len(rows), 4096):
        xb = x_all[rows[i : i + 4096]].to(device)
        recon, _, _ = model(xb)
        total += float(((recon - xb) ** 2).sum())
    return total / (len(rows) * x_all.shape[1])


def provenance(data_summary: dict | None, cfg: TokenizerConfig, groups: np.ndarray | None, split: Split) -> dict:
    """What a model was trained on: the caller's free-text summary, the psi version, and the groups it
    trained and validated on (so evaluations can tell whether their test groups are new to it)."""
    data = dict(data_summary or {})
    if cfg.psi_kind == "geometry":
        data.setdefault("psi_version", PSI_VERSION)  # fitted on today's psi unless the tables said otherwise
    if groups is not None:
        groups = np.asarray(groups).astype(str)
        data["train_groups"] = sorted(set(groups[split.train]))
        data["val_groups"] = sorted(set(groups[split.val]))
    return data


def training_summary(tok: "Tokenizer", psi: np.ndarray, split: Split, trained: Trained, data: dict) -> TrainingSummary:
    """The held-out fit (MSE in standardised units, cosine to the data's mean) and codebook use of
    ``tok``, fitted on ``psi[split.train]``; ``seconds`` is left for the caller."""
    all_tokens = tok.encode(psi)
    held_idx = split.val if len(split.val) else split.train
    held = psi[held_idx]
    recon = tok.decode(all_tokens[held_idx])
    std = tok.standardiser
    stats = codebook_stats(all_tokens, tok.codebook_size)
    return TrainingSummary(
        n_train=len(split.train), n_val=len(split.val), epochs_run=trained.epochs_run, best_epoch=trained.best_epoch,
        val_mse=float(np.mean((std.forward(recon) - std.forward(held)) ** 2)),
        val_cosine=float(np.mean(cosine_rows(recon - std.mean, held - std.mean))),
        perplexity=stats["perplexity"], dead_code_share=stats["dead_code_share"], level_usage=stats["level_usage"],
        torch_threads=torch.get_num_threads(), data=data)


class Tokenizer:
    """Fit, save, load, encode and decode. ``Tokenizer.fit(psi)`` mirrors ``dfe fit``."""

    def __init__(self, config: TokenizerConfig, model: TokenModel, standardiser: Standardiser,
                 summary: TrainingSummary | None = None, extras: dict | None = None):
        self.config = config
        self.model = model.eval()
        self.standardiser = standardiser
        self.summary = summary or TrainingSummary()
        self.device = torch.device("cpu")
        self.extras = extras or {}  # e.g. "rig": blendshape -> geometry map for visualisation

    # ------------------------------------------------------------------ training
    @classmethod
    def fit(cls, psi: np.ndarray, groups: np.ndarray | None = None, *, config: TokenizerConfig | None = None,
            progress: bool = True, data_summary: dict | None = None, device: str = "cpu", **knobs) -> "Tokenizer":
        """Train on an (n, D) psi array; ``groups`` (person/video ids) give the held-out split.

        ``config``: a :class:`TokenizerConfig` (its defaults when None); ``knobs``: any of its fields by
        name, over ``config``: ``Tokenizer.fit(psi, groups=videos, codebook_size=256, levels=4)``. Its
        ``seed`` decides every random draw (same seed and thread count: a bit-identical model) and
        neither reads nor changes numpy's or torch's global random state. ``device`` (rvq-vae): cpu,
        cuda or auto; the data stays in host memory and goes over batch by batch."""
        start = time.perf_counter()
        psi = training_psi(psi)
        cfg = training_config(config, knobs, psi.shape[1])
        split = split_groups(len(psi), groups, cfg.val_fraction, cfg.seed)
        std = Standardiser.fit(psi, cfg.psi_kind, split.train)
        if cfg.quantizer == "shape-gain":
            dev = torch.device("cpu")
            trained = fit_shape_gain_model(cfg, std.forward(psi[split.train]), progress)
        else:  # the one standardised copy of psi lives only while the network trains
            dev = resolve_device(device)
            trained = train_rvq_vae(cfg, torch.from_numpy(std.forward(psi)), split, dev, progress)
        tok = cls(trained.config, trained.model, std)
        tok.device = dev
        tok.summary = training_summary(tok, psi, split, trained, provenance(data_summary, cfg, groups, split))
        tok.summary.seconds = round(time.perf_counter() - start, 1)
        return tok

    # ------------------------------------------------------------------ use
    def to(self, device: str) -> "Tokenizer":
        """Encode (and decode) on ``device``: cpu, cuda or auto."""
        self.device = resolve_device(device)
        self.model.to(self.device)
        return self

    @property
    def seen_groups(self) -> set[str] | None:
        """The groups (videos, or what ``fit`` was given) the model was trained or validated on;
        None for models that do not record them (dfe 0.2 and older)."""
        data = self.summary.data or {}
        if "train_groups" not in data:
            return None
        return set(map(str, data["train_groups"])) | set(map(str, data.get("val_groups", [])))

    @property
    def levels(self) -> int:
        return self.config.levels

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def gain_levels(self) -> int:
        """Intensities per action: token ``t`` is action ``t // gain_levels`` at intensity
        ``t % gain_levels`` (1 for rvq-vae models: every code is its own action)."""
        return self.config.gain_levels if self.config.quantizer == "shape-gain" else 1

    @property
    def intensities(self) -> np.ndarray | None:
        """The ``gain_levels`` intensities a shape-gain model's tokens share (``t % gain_levels``
        indexes them, in latent units); None for rvq-vae models."""
        if self.config.quantizer != "shape-gain":
            return None
        return self.model.gains.detach().cpu().numpy().astype(np.float64)

    def actions(self, tokens: np.ndarray) -> np.ndarray:
        """The action (direction) of every token id."""
        return np.asarray(tokens) // self.gain_levels

    def action_codes(self, tokens: np.ndarray) -> np.ndarray:
        """Every token id replaced by its action's strongest word (``action * G + G - 1``): one code
        per action, e.g. for the atlas, whatever intensity the token had (rvq-vae: unchanged)."""
        G = self.gain_levels
        return self.actions(tokens) * G + (G - 1)

    def check_psi(self, psi: np.ndarray) -> np.ndarray:
        psi = np.asarray(psi, dtype=np.float32)
        if psi.ndim == 1:
            psi = psi[None]
        if psi.shape[1] != self.config.dim:
            raise ModelError(
                f"this model expects psi kind {self.config.psi_kind!r} with {self.config.dim} values, "
                f"the data has {psi.shape[1]} values per frame")
        return psi

    @torch.no_grad()
    def encode(self, psi: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """(n, D) psi -> (n, K) token ids (int64)."""
        psi = self.check_psi(psi)
        out = []
        for i in range(0, len(psi), batch_size):  # standardised batch by batch: memory stays at one batch
            xb = torch.from_numpy(self.standardiser.forward(psi[i : i + batch_size])).to(self.device)
            out.append(self.model.encode(xb).cpu())
        return torch.cat(out).numpy().astype(np.int64) if out else np.zeros((0, self.levels), np.int64)

    @torch.no_grad()
    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """(n, k) tokens (k <= K levels) -> (n, D) psi in the data's units (cm for geometry)."""
        tokens = torch.as_tensor(np.atleast_2d(tokens), dtype=torch.long, device=self.device)
        return self.standardiser.inverse(self.model.decode(tokens).cpu().numpy())

    def decode_prefix(self, tokens: np.ndarray, k: int) -> np.ndarray:
        """Reconstruction from the first k levels only (coarse-to-fine)."""
        return self.decode(np.atleast_2d(tokens)[:, :k])

    @torch.no_grad()
    def decode_code(self, code: int | np.ndarray) -> np.ndarray:
        """The deformation one code adds, D(e_c) - D(0), in data units: (D,) or (n, D)."""
        codes = torch.as_tensor(np.atleast_1d(code), dtype=torch.long, device=self.device)
        d = self.model.deformations(codes).cpu().numpy() * self.standardiser.scale
        return d[0] if np.ndim(code) == 0 else d

    def code_deformations(self) -> np.ndarray:
        """(N, D): every code's deformation in data units."""
        return self.decode_code(np.arange(self.codebook_size))

    def code_peaks(self, deformations: np.ndarray | None = None) -> np.ndarray:
        """(N,) each code's peak: its largest vertex displacement (geometry) or largest value.
        ``deformations``: :meth:`code_deformations`, when the caller has them already."""
        d = self.code_deformations() if deformations is None else deformations
        if self.config.psi_kind == "geometry":
            return np.linalg.norm(d.reshape(len(d), -1, 3), axis=2).max(1)
        return np.abs(d).max(1)

    def strength_basis(self, deformations: np.ndarray | None = None) -> np.ndarray:
        """(N, D) rows b_c with strength = (psi - mean) . b_c: psi's least-squares multiple of the
        code's deformation d_c, times d_c's peak (the largest vertex displacement for geometry,
        the largest value for other kinds). So a frame that shows exactly the code's deformation
        has strength = its peak, in data units (cm for geometry)."""
        d = self.code_deformations() if deformations is None else deformations
        peak = self.code_peaks(d)
        return (d * (peak / np.maximum((d**2).sum(1), 1e-12))[:, None]).astype(np.float32)

    def strength(self, psi: np.ndarray, tokens: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """(n, K): how strongly each frame shows each of its tokens (see :meth:`strength_basis`).
        Chunked: memory beyond the inputs is ``chunk x K x D`` floats."""
        basis = self.strength_basis()
        tokens = np.asarray(tokens, dtype=np.int64)
        out = np.empty(tokens.shape, dtype=np.float32)
        for i in range(0, len(tokens), chunk):
            p = np.asarray(psi[i:i + chunk], dtype=np.float32) - self.standardiser.mean
            out[i:i + chunk] = np.einsum("nd,nkd->nk", p, basis[tokens[i:i + chunk]])
        return out

    def code_strength(self, psi: np.ndarray, codes: np.ndarray, deformations: np.ndarray | None = None,
                      chunk: int = 8192) -> np.ndarray:
        """(n, len(codes)): every frame's strength for each of ``codes``, whether or not it is a token."""
        basis = self.strength_basis(deformations)[np.asarray(codes, dtype=np.int64)]
        out = np.empty((len(psi), len(basis)), dtype=np.float32)
        for i in range(0, len(psi), chunk):
            out[i:i + chunk] = (np.asarray(psi[i:i + chunk], dtype=np.float32) - self.standardiser.mean) @ basis.T
        return out

    def reconstruction_error(self, psi: np.ndarray, tokens: np.ndarray | None = None) -> np.ndarray:
        """Per-frame RMSE between psi and its reconstruction (data units)."""
        psi = self.check_psi(psi)
        tokens = self.encode(psi) if tokens is None else tokens
        return np.sqrt(np.mean((self.decode(tokens) - psi) ** 2, axis=1))

    # ------------------------------------------------------------------ files
    def _tensors(self) -> dict:
        tied = tied_keys(self.model)
        tensors = {f"model.{k}": v.detach().cpu().clone().contiguous() for k, v in self.model.state_dict().items()
                   if k not in tied}
        tensors["std.mean"] = torch.from_numpy(np.ascontiguousarray(self.standardiser.mean))
        tensors["std.scale"] = torch.from_numpy(np.ascontiguousarray(self.standardiser.scale))
        for k, v in self.extras.items():
            tensors[f"extra.{k}"] = torch.as_tensor(np.asarray(v, dtype=np.float32))
        return tensors

    def fingerprint(self) -> str:
        """A hash of every weight: equal for the same model, whatever file it came from."""
        return hashlib.sha256(json.dumps(tensor_checksums(self._tensors()), sort_keys=True).encode()).hexdigest()[:16]

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        tensors = self._tensors()
        meta = {
            "checksums": json.dumps(tensor_checksums(tensors)),
            "format": FORMAT, "format_version": str(FORMAT_VERSION), "dfe_version": __version__,
            "psi_kind": self.config.psi_kind, "dim": str(self.config.dim),
            "topology_id": TOPOLOGY_ID if self.config.psi_kind == "geometry" else "",
            "psi_version": str(self.psi_version),
            "config": json.dumps(asdict(self.config)), "training": json.dumps(asdict(self.summary)),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(tensors, str(tmp), metadata=meta)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # an ordinary file, not the temp file's private mode
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        """Load a model file; any problem is a :class:`ModelError` with one clear sentence."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # safetensors raises several types for foreign/corrupt files
            raise ModelError(f"{path} is not a dfe model file (cannot read it as safetensors: {e})") from None
        if meta.get("format") != FORMAT:
            raise ModelError(f"{path} is a safetensors file but not a dfe tokenizer (format={meta.get('format')!r})")
        if "checksums" in meta:  # models written before dfe 0.2 have none
            expected = json.loads(meta["checksums"])
            bad = sorted(k for k, v in tensor_checksums(tensors).items() if expected.get(k) != v)
            if bad or set(expected) - set(tensors):
                raise ModelError(f"{path} is damaged: its weights do not match their checksums "
                                 f"({', '.join(bad or sorted(set(expected) - set(tensors)))[:120]})")
        if int(meta.get("format_version", 0)) > FORMAT_VERSION:
            raise ModelError(f"{path} was written by a newer dfe ({meta.get('dfe_version')}); upgrade dfe")
        try:
            stored = json.loads(meta["config"])
            stored.setdefault("quantizer", "rvq-vae")  # model files before dfe 0.4 are all RVQ-VAEs
            stored.setdefault("codebook_update", "per-level")  # how dfe 0.4-0.7 trained shape-gain models
            stored.setdefault("distinct_actions", False)  # and encoded: an action could repeat in a frame
            cfg = TokenizerConfig.from_dict(stored)
            summary = TrainingSummary(**json.loads(meta.get("training", "{}")))
            if cfg.quantizer == "shape-gain":
                model = ShapeGainModel(cfg, int(tensors["model.encoder.weight"].shape[0]))
            else:
                model = RVQVAE(cfg, tensors["model.encoder.patches"].numpy())
            state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
            missing, unexpected = model.load_state_dict(state, strict=False)
            if unexpected or set(missing) - tied_keys(model):
                raise KeyError(f"missing {missing[:3]}, unexpected {unexpected[:3]}")
            std = Standardiser(tensors["std.mean"].numpy(), tensors["std.scale"].numpy())
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            raise ModelError(f"{path} is a damaged or incompatible dfe model ({type(e).__name__}: {str(e)[:200]})") from None
        if cfg.psi_kind == "geometry" and meta.get("topology_id") != TOPOLOGY_ID:
            raise ModelError(f"{path} was trained on mesh topology {meta.get('topology_id')!r}, dfe uses {TOPOLOGY_ID!r}")
        extras = {k[6:]: v.numpy() for k, v in tensors.items() if k.startswith("extra.")}
        return cls(cfg, model, std, summary, extras)

    @property
    def psi_version(self) -> int:
        """The psi version the model was trained on (:data:`dfe.extraction.expression.PSI_VERSIONS`); models
        written by dfe 0.3 and earlier have none recorded: version 1."""
        return int(self.summary.data.get("psi_version", 1))

    def check_psi_version(self, version: int, name: str = "this table") -> None:
        """ValueError with one sentence when geometry psi of ``version`` meets this model."""
        if self.config.psi_kind == "geometry" and int(version) != self.psi_version:
            raise ValueError(f"{name} holds psi version {version} but the model was trained on psi version "
                             f"{self.psi_version}: psi made two ways cannot share tokens; re-extract the table or "
                             "refit the model with this dfe")

    def __repr__(self) -> str:
        c = self.config
        return (f"Tokenizer(quantizer={c.quantizer!r}, psi_kind={c.psi_kind!r}, dim={c.dim}, "
                f"codebook_size={c.codebook_size}, levels={c.levels}, decoder={c.decoder!r})")


def tensor_checksums(tensors: dict) -> dict[str, str]:
    """SHA-256 (16 hex) of every tensor's bytes, by name: stored in the model file, checked at load."""
    return {k: hashlib.sha256(v.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]
            for k, v in sorted(tensors.items())}

