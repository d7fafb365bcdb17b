"""The measured unit responses: how MediaPipe's mesh shows each FACS unit, the basis that
:mod:`dfe.extraction.action_units` fits the geometry ``AU*_r`` on (AU version 2), and the
ridge-regularised non-negative fit itself.

``src/dfe/data/unit_responses.npz`` (built by ``scripts/build_unit_responses.py`` from the Canada
people's ``dfe synth`` photos; credits in its metadata) holds the basis in
:func:`dfe.extraction.units.unit_basis`' column order, one gain per side unit (coefficient -> cm) and
the fit's ridge.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from dfe.extraction.units import unit_basis

RESPONSE_FILE = Path(__file__).parents[1] / "data" / "unit_responses.npz"


@lru_cache(maxsize=1)
def measured_response_file() -> tuple[np.ndarray, np.ndarray, dict]:
    """The bundled file's basis (1404, U), per-unit gains (U,) and metadata (read once)."""
    with np.load(RESPONSE_FILE, allow_pickle=False) as z:
        basis, gain, meta = z["basis"].astype(np.float64), z["gain"].astype(np.float64), json.loads(str(z["meta"]))
    _, units = unit_basis()
    if meta.get("units") != [u.label for u in units]:
        raise ValueError(f"{RESPONSE_FILE.name} was built for other units: rebuild it with scripts/build_unit_responses.py")
    return basis, gain, meta


def measured_unit_basis() -> np.ndarray:
    """(1404, U) measured unit responses, in :func:`dfe.extraction.units.unit_basis`' column order
    (the bundled ``unit_responses.npz``; its metadata names the units, people, ridge and sources)."""
    return measured_response_file()[0]


def nnls_solver(basis: np.ndarray, ridge: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(A, P) for the non-negative fit of psi on ``basis`` (1404, U) with a ridge of ``ridge`` x the
    median squared column norm: A = L^T and P = L^-1 B^T for the Cholesky factor L of B^T B + lambda I,
    so that min |B c - psi|^2 + lambda |c|^2 over c >= 0 is min |A c - P psi| (a U x U problem)."""
    gram = basis.T @ basis
    gram = gram + ridge * np.median(np.diag(gram)) * np.eye(len(gram))
    chol = np.linalg.cholesky(gram + 1e-9 * np.trace(gram) * np.eye(len(gram)))
    return chol.T.copy(), np.linalg.solve(chol, basis.T)


def fit_coefficients(solver: tuple[np.ndarray, np.ndarray], psi: np.ndarray) -> np.ndarray:
    """Coefficients (n, U) of psi (n, 1404) by :func:`nnls_solver`'s fit; NaN rows stay NaN."""
    a, p = solver
    psi = np.atleast_2d(np.asarray(psi, dtype=np.float64))
    out = np.full((len(psi), a.shape[1]), np.nan)
    ok = np.isfinite(psi).all(1)
    rhs = psi[ok] @ p.T
    out[ok] = [nnls(a, r)[0] for r in rhs] if len(rhs) else np.zeros((0, a.shape[1]))
    return out
