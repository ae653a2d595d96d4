"""Gamma-Gamma spend model (Fader, Hardie & Lee 2005, "RFM and CLV"), fitted by maximum likelihood.

Each transaction of a customer has value ``z ~ Gamma(p, nu)`` (shape ``p``, rate ``nu``),
and ``nu ~ Gamma(q, gamma)`` across customers, so a customer's mean transaction value is
``p / nu`` and the population mean is ``p * gamma / (q - 1)``. Per customer the model
needs

- ``x``: number of transactions whose values are averaged (count, >= 1 to fit),
- ``m``: their mean value (EUR; > 0 to fit).

Spend is assumed independent of the purchase process (BG/NBD), so expected revenue is
expected transactions times expected spend per transaction
(:func:`expected_spend`). Published CDNOW-sample parameters (946 customers with repeat
transactions, mean of repeat transactions in USD): p = 6.25, q = 3.74, gamma = 15.44.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from klantbeeld.errors import KlantbeeldError


@dataclass(frozen=True)
class GammaGammaParams:
    """Fitted parameters: shape ``p``, shape ``q`` and scale ``gamma`` (currency units, EUR)."""

    p: float
    q: float
    gamma: float

    @property
    def mean_spend(self) -> float:
        """Population mean value of a transaction, ``p * gamma / (q - 1)`` (EUR; inf if q <= 1)."""
        return self.p * self.gamma / (self.q - 1) if self.q > 1 else float("inf")


def _arrays(x: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x_arr, m_arr = np.asarray(x, dtype=float), np.asarray(m, dtype=float)
    if x_arr.shape != m_arr.shape:
        raise KlantbeeldError("Gamma-Gamma: x and m must have the same length")
    return x_arr, m_arr


def log_likelihood(params: GammaGammaParams, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Log-density of each customer's mean transaction value given ``x`` transactions.

    Given ``nu``, ``x * m ~ Gamma(p x, nu)``; integrating ``nu`` out gives

    ``Γ(px+q) / (Γ(px) Γ(q)) · γ^q x^{px} m^{px-1} / (γ + x m)^{px+q}``.

    Parameters
    ----------
    params : GammaGammaParams
        Model parameters.
    x : numpy.ndarray
        Transactions averaged per customer (count, >= 1).
    m : numpy.ndarray
        Mean value of those transactions (EUR, > 0).

    Returns
    -------
    numpy.ndarray
        Log-likelihood per customer (nats; densities are per EUR).
    """
    p, q, g = params.p, params.q, params.gamma
    x, m = _arrays(x, m)
    px = p * x
    return np.asarray(
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * np.log(g)
        + px * np.log(x)
        + (px - 1) * np.log(m)
        - (px + q) * np.log(g + x * m)
    )


def fit(x: np.ndarray, m: np.ndarray, start: GammaGammaParams | None = None) -> GammaGammaParams:
    """Maximum-likelihood fit (L-BFGS-B on log-parameters) on customers with ``x >= 1``.

    Parameters
    ----------
    x : numpy.ndarray
        Transactions averaged per customer (count). Every entry must be >= 1.
    m : numpy.ndarray
        Mean transaction value per customer (EUR). Every entry must be > 0.
    start : GammaGammaParams, optional
        Starting point; default ``p = q = 1.5`` and ``gamma`` set so the starting
        population mean equals the mean of ``m``.

    Returns
    -------
    GammaGammaParams
        The fitted parameters.

    Raises
    ------
    KlantbeeldError
        Invalid inputs (fewer than 2 customers, ``x < 1`` or ``m <= 0``), or the optimiser
        did not converge.
    """
    x, m = _arrays(x, m)
    if x.size < 2:
        raise KlantbeeldError(f"Gamma-Gamma: need at least 2 customers to fit, got {x.size}")
    if (x < 1).any() or not np.isfinite(x).all():
        raise KlantbeeldError("Gamma-Gamma: every x (transactions averaged) must be >= 1")
    if (m <= 0).any() or not np.isfinite(m).all():
        raise KlantbeeldError("Gamma-Gamma: every m (mean transaction value) must be > 0")
    s = start or GammaGammaParams(1.5, 1.5, float(np.mean(m)) * 0.5 / 1.5)
    theta0 = np.log([s.p, s.q, s.gamma])

    def nll(theta: np.ndarray) -> float:
        return float(-log_likelihood(GammaGammaParams(*np.exp(theta)), x, m).sum())

    res = optimize.minimize(nll, theta0, method="L-BFGS-B", bounds=[(-10, 15)] * 3)
    if not res.success:
        raise KlantbeeldError(f"Gamma-Gamma fit did not converge: {res.message}")
    return GammaGammaParams(*(float(v) for v in np.exp(res.x)))


def expected_spend(params: GammaGammaParams, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Expected value of a customer's future transactions, E[Z | p, q, gamma, m, x].

    ``(gamma + m x) p / (p x + q - 1)``: a weighted mean of the population mean and the
    customer's own mean ``m``, the weight of ``m`` growing with ``x``. Customers with
    ``x = 0`` get the population mean.

    Parameters
    ----------
    params : GammaGammaParams
        Fitted parameters (``q > 1`` for a finite mean).
    x : numpy.ndarray
        Transactions averaged per customer (count, >= 0).
    m : numpy.ndarray
        Their mean value (EUR, >= 0; ignored where ``x = 0``).

    Returns
    -------
    numpy.ndarray
        Expected value per future transaction (EUR).
    """
    if params.q <= 1:
        raise KlantbeeldError(f"Gamma-Gamma: q must be > 1 for a finite mean, got {params.q}")
    x, m = _arrays(x, m)
    m = np.where(x > 0, np.nan_to_num(m, nan=0.0), 0.0)
    p, q, g = params.p, params.q, params.gamma
    return np.asarray((g + m * x) * p / (p * x + q - 1))


def simulate(params: GammaGammaParams, x: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw each customer's mean transaction value from the model.

    Parameters
    ----------
    params : GammaGammaParams
        True parameters.
    x : numpy.ndarray
        Transactions per customer (count, >= 1).
    seed : int
        Seed of the random generator.

    Returns
    -------
    tuple of numpy.ndarray
        Mean value ``m`` per customer (EUR) and the customer's true mean spend
        ``p / nu`` (EUR).
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=np.int64)
    if (x < 1).any():
        raise KlantbeeldError("Gamma-Gamma simulate: every x must be >= 1")
    nu = rng.gamma(params.q, 1 / params.gamma, x.size)
    # the sum of x Gamma(p, nu) draws is Gamma(p x, nu)
    total = rng.gamma(params.p * x, 1 / nu)
    return total / x, params.p / nu
