"""The torch modules behind a tokenizer: the patch transformer encoder with ResidualVQ (rvq-vae) and the shape-gain dictionary as a module."""

from __future__ import annotations

import math
import numpy as np
import torch
from torch import nn
from dfe.extraction.mesh import canonical_mesh
from dfe.tokens.config import TokenizerConfig


def make_patches(config: TokenizerConfig) -> np.ndarray:
    """(P, S) indices into psi features, padded with ``dim`` (a zero feature).

    Geometry: k-means over the canonical vertex positions -> P spatial patches of nearby vertices
    (3 features each). Other kinds: consecutive chunks of ``chunk`` values.
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


class RVQVAE(nn.Module):
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
        elif config.decoder == "mlp":
            self.decoder = nn.Sequential(nn.Linear(config.latent_dim, 256), nn.GELU(), nn.Linear(256, config.dim))
        else:
            raise ValueError("decoder must be 'linear' or 'mlp'")

    @property
    def codebook(self) -> torch.Tensor:
        return self.rvq.codebooks[0]  # (N, latent) shared by every level

    def code_deformations(self) -> torch.Tensor:
        """D(e_c) - D(0) for every code (N, dim), standardised units."""
        cb = self.codebook
        return self.decoder(cb) - self.decoder(torch.zeros_like(cb[:1]))

    @torch.no_grad()
    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """Greedy residual nearest-code search (what ResidualVQ does in eval mode, without its
        loss and bookkeeping): (n, K) code ids."""
        cb = self.codebook
        half_sq = 0.5 * (cb**2).sum(1)
        out = []
        r = z
        for _ in range(self.config.levels):
            idx = torch.argmax(r @ cb.T - half_sq, dim=1)  # argmin of |r - c|^2
            out.append(idx)
            r = r - cb[idx]
        return torch.stack(out, 1)

    def forward(self, x: torch.Tensor):
        z = self.encoder(x)
        quantized, indices, commit = self.rvq(z)
        return self.decoder(quantized), indices, commit.sum()


class ShapeGainModel(nn.Module):
    """The shape-gain dictionary (:mod:`dfe.tokens.dictionary`) as a model: a linear encoder (the training
    data's principal directions), the shared actions and gains, and the linear decoder back to psi.
    Token ``c * G + g`` is ``gains[g] * directions[c]`` at every level (so every token has one exact
    deformation); psi_hat = b + W (sum of the K words)."""

    def __init__(self, config: TokenizerConfig, latent_dim: int | None = None):
        super().__init__()
        self.config = config
        latent = latent_dim or config.latent_dim
        self.encoder = nn.Linear(config.dim, latent, bias=False)
        self.decoder = nn.Linear(latent, config.dim)
        self.register_buffer("directions", torch.zeros(config.n_actions, latent))
        self.register_buffer("gains", torch.ones(config.gain_levels))

    @property
    def codebook(self) -> torch.Tensor:
        """(N * G, latent): every word."""
        return (self.directions[:, None, :] * self.gains[None, :, None]).reshape(-1, self.directions.shape[1])

    def latent(self, tokens: torch.Tensor) -> torch.Tensor:
        """(n, k) tokens of levels 1..k -> (n, latent) sum of their words."""
        return self.codebook[tokens].sum(1)

    def code_deformations(self) -> torch.Tensor:
        cb = self.codebook
        return self.decoder(cb) - self.decoder(torch.zeros_like(cb[:1]))

    def _best(self, r: torch.Tensor, words: torch.Tensor, half_sq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The word nearest each residual row (argmin |r - w|^2 = argmax r.w - |w|^2/2): (ids, words)."""
        idx = torch.argmax(r @ words.T - half_sq, dim=1)
        return idx, words[idx]

    @torch.no_grad()
    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """Greedy residual search, then ``config.refine_passes`` passes re-choosing each level's word
        for what the other levels leave (the error never grows): (n, K) word ids."""
        K = self.config.levels
        words = self.codebook
        half_sq = 0.5 * (words**2).sum(1)
        ids, parts = [], []
        r = z
        for k in range(K):
            w, v = self._best(r, words, half_sq)
            ids.append(w)
            parts.append(v)
            r = r - v
        ids, parts = torch.stack(ids, 1), torch.stack(parts, 1)
        total = parts.sum(1)
        for _ in range(self.config.refine_passes):
            for k in range(K):
                rest = z - (total - parts[:, k])
                w, v = self._best(rest, words, half_sq)
                better = ((rest - v) ** 2).sum(1) < ((rest - parts[:, k]) ** 2).sum(1) - 1e-7
                ids[better, k] = w[better]
                total = total + torch.where(better[:, None], v - parts[:, k], torch.zeros_like(v))
                parts[better, k] = v[better]
        return ids

    def forward(self, x: torch.Tensor):
        idx = self.indices(self.encoder(x))
        return self.decoder(self.latent(idx)), idx, x.new_zeros(())


