"""A tokenizer's knobs (keyword arguments of Tokenizer.fit and the [fit] section of a config), validated once."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

QUANTIZERS = ("shape-gain", "rvq-vae")
CODEBOOK_UPDATES = ("joint", "per-level")
DECODERS = ("linear", "mlp")


@dataclass
class TokenizerConfig:
    """Every knob of the model and its training (defaults chosen by bench/ablation.py)."""

    psi_kind: str = "geometry"
    dim: int = 1404
    quantizer: str = "shape-gain"  # shape-gain (dfe.tokens.dictionary, the default) | rvq-vae (transformer + ResidualVQ)
    codebook_size: int = 256  # token ids (words); shape-gain: actions x gain_levels
    gain_levels: int = 4  # shape-gain: intensities per action (log2 of it are bits of every token)
    merge_cosine: float = 0.9  # shape-gain: actions closer than this are merged (the freed one replaced)
    lloyd_iters: int = 25  # shape-gain: training iterations
    codebook_update: str = "joint"  # shape-gain: joint (least squares over all levels, dfe 0.8) | per-level (dfe 0.4-0.7)
    refine_passes: int = 1  # shape-gain: encoding passes that re-choose each level's word given the others
    distinct_actions: bool = True  # shape-gain: a frame uses each action at most once (dfe 0.8; before: False)
    levels: int = 4
    latent_dim: int = 64
    d_model: int = 64
    n_layers: int = 1
    n_heads: int = 4
    n_patches: int = 8  # geometry: spatial patches of nearby canonical vertices (face regions)
    chunk: int = 4  # vector psi: values per chunk
    decoder: str = "linear"  # linear (exactly additive) | mlp (joint, on the summed codes)
    commitment_weight: float = 0.25
    orthogonal_weight: float = 0.0
    sparsity_weight: float = 0.1
    dead_code_threshold: float = 2.0
    epochs: int = 40
    batch_size: int = 1024  # large batches: better k-means init, less dead-code churn
    lr: float = 4e-3
    patience: int = 5
    val_fraction: float = 0.1
    seed: int = 0  # every random draw of a fit (split, k-means, weights, batches) follows from it

    def __post_init__(self):
        if self.quantizer not in QUANTIZERS:
            raise ValueError(f"quantizer must be {' or '.join(map(repr, QUANTIZERS))}, not {self.quantizer!r}")
        if self.codebook_update not in CODEBOOK_UPDATES:
            raise ValueError(f"codebook_update must be {' or '.join(map(repr, CODEBOOK_UPDATES))}, "
                             f"not {self.codebook_update!r}")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be {' or '.join(map(repr, DECODERS))}, not {self.decoder!r}")

    @property
    def n_actions(self) -> int:
        """Distinct actions (directions): the codebook size over the gain levels (rvq-vae: every code)."""
        return self.codebook_size // self.gain_levels if self.quantizer == "shape-gain" else self.codebook_size

    @classmethod
    def from_dict(cls, d: dict) -> "TokenizerConfig":
        """From knobs by name (a model file's config, a config file's [fit] section); a sentence
        naming any that is not a knob."""
        cls.check_knobs(d)
        return cls(**d)

    @classmethod
    def check_knobs(cls, names) -> None:
        """ValueError with one sentence naming any of ``names`` that is not a knob."""
        unknown = set(names) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown tokenizer options: {', '.join(sorted(unknown))}")

    def updated(self, **knobs) -> "TokenizerConfig":
        """This config with ``knobs`` (fields by name) changed, checked like :meth:`from_dict`."""
        return TokenizerConfig.from_dict({**asdict(self), **knobs})


