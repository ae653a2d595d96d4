"""BG/NBD repeat-purchase model (Fader, Hardie & Lee 2005), fitted by maximum likelihood.

Each customer buys as a Poisson process with rate λ ~ Gamma(r, α) while "alive" and,
after every repeat purchase, drops out for good with probability p ~ Beta(a, b). Per
customer the model needs the calibration summary

- ``x``: number of repeat transactions (distinct purchase days after the first),
- ``t_x``: time of the last repeat transaction, measured from the first purchase,
- ``T``: length of observation, from the first purchase to the calibration cutoff,

all in one time unit (the benchmark uses weeks; α is then in weeks, λ per week).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from klantbeeld.errors import KlantbeeldError


@dataclass(frozen=True)
class BGNBDParams:
    """Fitted parameters: ``r``, ``alpha`` (time unit of the data), ``a``, ``b``."""

    r: float
    alpha: float
    a: float
    b: float


def _check(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> None:
    if not (x.shape == t_x.shape == T.shape):
        raise KlantbeeldError("BG/NBD: x, t_x and T must have the same length")
    if (x < 0).any() or (t_x < 0).any() or (t_x > T + 1e-9).any():
        raise KlantbeeldError("BG/NBD: expected x >= 0 and 0 <= t_x <= T for every customer")
    if ((x == 0) & (t_x != 0)).any():
        raise KlantbeeldError("BG/NBD: t_x must be 0 for customers without repeat purchases")


def log_likelihood(
    params: BGNBDParams, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """Log-likelihood of each customer's calibration summary (equation 6 of the paper).

    Parameters
    ----------
    params : BGNBDParams
        Model parameters.
    x, t_x, T : numpy.ndarray
        Repeat transactions (count), time of the last repeat and observation length (one
        time unit, e.g. weeks), one entry per customer.

    Returns
    -------
    numpy.ndarray
        Log-likelihood per customer (nats).
    """
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    common = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    log_a = special.betaln(a, b + x) - special.betaln(a, b) + common - (r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_b = np.where(
            x > 0,
            special.betaln(a + 1, np.maximum(b + x - 1, 1e-12))
            - special.betaln(a, b)
            + common
            - (r + x) * np.log(alpha + t_x),
            -np.inf,
        )
    return np.asarray(np.logaddexp(log_a, log_b))


def fit(
    x: np.ndarray, t_x: np.ndarray, T: np.ndarray, start: BGNBDParams | None = None
) -> BGNBDParams:
    """Maximum-likelihood fit (L-BFGS-B on log-parameters).

    Parameters
    ----------
    x, t_x, T : numpy.ndarray
        Calibration summaries, see the module docstring (one time unit throughout).
    start : BGNBDParams, optional
        Starting point; default all parameters 1.

    Returns
    -------
    BGNBDParams
        The fitted parameters.

    Raises
    ------
    KlantbeeldError
        Inconsistent inputs, or the optimiser did not converge.
    """
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    _check(x, t_x, T)
    s = start or BGNBDParams(1.0, 1.0, 1.0, 1.0)
    theta0 = np.log([s.r, s.alpha, s.a, s.b])

    def nll(theta: np.ndarray) -> float:
        p = BGNBDParams(*np.exp(theta))
        return float(-log_likelihood(p, x, t_x, T).sum())

    res = optimize.minimize(nll, theta0, method="L-BFGS-B", bounds=[(-10, 10)] * 4)
    if not res.success:
        raise KlantbeeldError(f"BG/NBD fit did not converge: {res.message}")
    return BGNBDParams(*(float(v) for v in np.exp(res.x)))


def expected_in_holdout(
    params: BGNBDParams, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """Expected repeat transactions in the next ``t`` time units (equation 10 of the paper).

    Parameters
    ----------
    params : BGNBDParams
        Fitted parameters.
    t : float
        Holdout length, same unit as ``T``.
    x, t_x, T : numpy.ndarray
        Calibration summaries per customer.

    Returns
    -------
    numpy.ndarray
        E[Y(t) | x, t_x, T] per customer (transactions).
    """
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
    num = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp)
    den = 1 + np.where(
        x > 0, a / np.maximum(b + x - 1, 1e-12) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0
    )
    return np.asarray(num / den)


def simulate(params: BGNBDParams, T: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw calibration summaries ``(x, t_x)`` from the model for observation lengths ``T``.

    Parameters
    ----------
    params : BGNBDParams
        True parameters.
    T : numpy.ndarray
        Observation length per customer (time unit of ``alpha``).
    seed : int
        Seed of the random generator.

    Returns
    -------
    tuple of numpy.ndarray
        Repeat transactions ``x`` and time of the last one ``t_x`` per customer.
    """
    rng = np.random.default_rng(seed)
    n = len(T)
    lam = rng.gamma(params.r, 1 / params.alpha, n)
    p = rng.beta(params.a, params.b, n)
    x = np.zeros(n)
    t_x = np.zeros(n)
    for i in range(n):
        now = 0.0
        while True:
            now += rng.exponential(1 / lam[i])
            if now > T[i]:
                break
            x[i] += 1
            t_x[i] = now
            if rng.random() < p[i]:
                break
    return x, t_x
