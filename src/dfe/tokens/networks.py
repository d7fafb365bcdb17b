"""The torch modules behind a tokenizer: the patch transformer encoder with ResidualVQ (rvq-vae) and the
shape-gain dictionary as a module.

Both are a :class:`TokenModel`: an encoder (standardised psi -> latent z), ONE codebook of words shared
by all K levels, a greedy residual search choosing one word per level, and a decoder on the summed
words (standardised psi_hat). Only the codebook, the search's refinement and the decoding from token
ids differ between them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dfe.extraction.mesh import canonical_mesh
from dfe.tokens.config import TokenizerConfig


def make_patches(config: TokenizerConfig) -> np.ndarray:
    """(P, S) indices into psi features, padded with ``dim`` (a zero feature).

    Geometry: k-means over the canonical vertex positions -> P spatial patches of nearby vertices
    (3 features each; one fixed layout of face regions, whatever the fit's seed). Other kinds:
    consecutive chunks of ``chunk`` values.
    """
    if config.psi_kind == "geometry":
        from sklearn.cluster import KMeans

        verts = canonical_mesh().vertices
        labels = KMeans(config.n_patches, n_init=4, random_state=0).fit_predict(verts)
        groups = [np.flatnonzero(labels == p) for p in range(config.n_patches)]
        groups = [np.stack([3 * g, 3 * g + 1, 3 * g + 2], 1).reshape(-1) for g in groups]
    else:
        groups = [np.arange(i, min(i + config.chunk, config.dim)) for i in range(0, config.dim, config.chunk)]
    width = max(len(g) for g in groups)
    out = np.full((len(groups), width), config.dim, dtype=np.int64)
    for i, g in enumerate(groups):
        out[i, : len(g)] = g
    return out


def nearest_words(r: torch.Tensor, words: torch.Tensor, half_sq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The word nearest each residual row (argmin |r - w|^2 = argmax r.w - |w|^2/2, ``half_sq`` being
    |w|^2/2): (ids, words)."""
    idx = torch.argmax(r @ words.T - half_sq, dim=1)
    return idx, words[idx]


def refined_residual_search(z: torch.Tensor, words: torch.Tensor, levels: int, passes: int,
                            group: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Level by level, the word nearest what the earlier levels leave (``passes=0``: the greedy residual
    search), then ``passes`` passes re-choosing each level's word for what the other levels leave (the
    error never grows): (n, K) word ids and (n, latent) their sum. ``group`` > 0: words ``w`` with the same ``w // group`` (one action at its
    intensities) are used at most once per row (unless there are fewer such actions than levels)."""
    half_sq = 0.5 * (words**2).sum(1)
    n, dev = len(z), z.device
    if group and len(words) // group < levels:  # fewer actions than levels: each cannot be used once only
        group = 0
    ids = torch.zeros((n, levels), dtype=torch.long, device=dev)
    parts = torch.zeros((n, levels, words.shape[1]), dtype=z.dtype, device=dev)
    total = torch.zeros_like(z)
    rows = torch.arange(n, device=dev)

    def best(rest: torch.Tensor, taken: list[torch.Tensor]) -> torch.Tensor:
        if not (group and taken):
            return nearest_words(rest, words, half_sq)[0]
        score = rest @ words.T - half_sq
        by_action = score.view(n, len(words) // group, group)  # a view: writes go to score
        for t in taken:
            by_action[rows, t // group] = float("-inf")
        return torch.argmax(score, dim=1)

    for k in range(levels):
        w = best(z - total, [ids[:, j] for j in range(k)])
        ids[:, k], parts[:, k] = w, words[w]
        total = total + words[w]
    for _ in range(passes):
        for k in range(levels):
            rest = z - (total - parts[:, k])
            w = best(rest, [ids[:, j] for j in range(levels) if j != k])
            v = words[w]
            better = ((rest - v) ** 2).sum(1) < ((rest - parts[:, k]) ** 2).sum(1) - 1e-7
            ids[better, k] = w[better]
            total = total + torch.where(better[:, None], v - parts[:, k], torch.zeros_like(v))
            parts[better, k] = v[better]
    return ids, total


class TokenModel(nn.Module):
    """What a tokenizer needs of its model. Subclasses give ``encoder`` and ``decoder`` (modules),
    ``codebook`` (a property: (N, latent), every word, shared by all levels), :meth:`indices` and
    :meth:`latent`."""

    config: TokenizerConfig
    encoder: nn.Module
    decoder: nn.Module
    codebook: torch.Tensor

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """(n, latent) -> (n, K) word ids."""
        raise NotImplementedError

    def latent(self, tokens: torch.Tensor) -> torch.Tensor:
        """(n, k) tokens of levels 1..k -> (n, latent) sum of their words."""
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised psi (n, dim) -> (n, K) token ids."""
        return self.indices(self.encoder(x))

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """(n, k) tokens (k <= K) -> standardised psi_hat (n, dim)."""
        return self.decoder(self.latent(tokens))

    def deformations(self, codes: torch.Tensor | None = None) -> torch.Tensor:
        """D(e_c) - D(0) for each of ``codes`` (every code when None): (n, dim), standardised units."""
        words = self.codebook if codes is None else self.codebook[codes]
        return self.decoder(words) - self.decoder(torch.zeros_like(words[:1]))


class Encoder(nn.Module):
    """psi (standardised) -> patch tokens -> transformer -> mean pool -> latent z."""

    def __init__(self, config: TokenizerConfig, patches: np.ndarray):
        super().__init__()
        self.register_buffer("patches", torch.as_tensor(patches))
        n_p, width = patches.shape
        self.patch_weight = nn.Parameter(torch.randn(n_p, width, config.d_model) / math.sqrt(width))
        self.patch_bias = nn.Parameter(torch.zeros(n_p, config.d_model))
        layer = nn.TransformerEncoderLayer(config.d_model, config.n_heads, 2 * config.d_model,
                                           dropout=0.0, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.d_model)
        self.to_latent = nn.Linear(config.d_model, config.latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x, x.new_zeros(len(x), 1)], dim=1)[:, self.patches]  # (B, P, S)
        h = torch.einsum("bps,psd->bpd", x, self.patch_weight) + self.patch_bias
        h = self.transformer(h)
        return self.to_latent(self.norm(h.mean(1)))


class RVQVAE(TokenModel):
    """The patch transformer encoder, vector-quantize-pytorch's ResidualVQ with one codebook for every
    level (trained by its EMA updates, k-means init and dead-code replacement) and a linear or MLP
    decoder. Only ResidualVQ's public API is used: its forward while training, ``codebooks`` and
    ``get_output_from_indices``."""

    def __init__(self, config: TokenizerConfig, patches: np.ndarray):
        super().__init__()
        from vector_quantize_pytorch import ResidualVQ

        self.config = config
        self.encoder = Encoder(config, patches)
        self.rvq = ResidualVQ(
            dim=config.latent_dim, num_quantizers=config.levels, codebook_size=config.codebook_size,
            shared_codebook=True, kmeans_init=True, kmeans_iters=10,
            threshold_ema_dead_code=config.dead_code_threshold,
            commitment_weight=config.commitment_weight,
            orthogonal_reg_weight=config.orthogonal_weight,
        )
        if config.decoder == "linear":
            self.decoder = nn.Linear(config.latent_dim, config.dim)
        else:
            self.decoder = nn.Sequential(nn.Linear(config.latent_dim, 256), nn.GELU(), nn.Linear(256, config.dim))

    @property
    def codebook(self) -> torch.Tensor:
        return self.rvq.codebooks[0]  # (N, latent): level 1's, shared by every level

    @torch.no_grad()
    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """The greedy residual nearest-code search over the shared codebook: the codes ResidualVQ's
        eval forward chooses (tests/test_tokenizer.py), without its k-means init of an untrained
        codebook, its losses and its bookkeeping."""
        return refined_residual_search(z, self.codebook, self.config.levels, passes=0)[0]

    def latent(self, tokens: torch.Tensor) -> torch.Tensor:
        # levels beyond the k given are -1, ResidualVQ's mark of a level left out (quantizer dropout): no word
        padded = F.pad(tokens, (0, self.config.levels - tokens.shape[1]), value=-1)
        return self.rvq.get_output_from_indices(padded)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training: (psi_hat, (n, K) code ids, commitment loss)."""
        z = self.encoder(x)
        quantized, indices, commit = self.rvq(z)
        return self.decoder(quantized), indices, commit.sum()


class ShapeGainModel(TokenModel):
    """The shape-gain dictionary (:mod:`dfe.tokens.dictionary`) as a model: a linear encoder (the training
    data's principal directions), the shared actions and gains, and the linear decoder back to psi.
    Token ``c * G + g`` is ``gains[g] * directions[c]`` at every level (so every token has one exact
    deformation); psi_hat = b + W (sum of the K words). Nothing in it is random: its weights come
    from the fit (:func:`dfe.tokens.tokenizer.fit_shape_gain_model`) or a model file, so the linear
    layers are made without torch's random init."""

    def __init__(self, config: TokenizerConfig, latent_dim: int | None = None):
        super().__init__()
        self.config = config
        latent = latent_dim or config.latent_dim
        self.encoder = nn.utils.skip_init(nn.Linear, config.dim, latent, bias=False)
        self.decoder = nn.utils.skip_init(nn.Linear, latent, config.dim)
        self.register_buffer("directions", torch.zeros(config.n_actions, latent))
        self.register_buffer("gains", torch.ones(config.gain_levels))

    @property
    def codebook(self) -> torch.Tensor:
        """(N * G, latent): every word."""
        return (self.directions[:, None, :] * self.gains[None, :, None]).reshape(-1, self.directions.shape[1])

    def latent(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.codebook[tokens].sum(1)

    @torch.no_grad()
    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """Greedy residual search, then ``config.refine_passes`` passes re-choosing each level's word
        for what the other levels leave (the error never grows): (n, K) word ids."""
        group = self.config.gain_levels if self.config.distinct_actions else 0
        return refined_residual_search(z, self.codebook, self.config.levels, self.config.refine_passes, group)[0]
