"""The Pareto front of trained models, and the min-norm weights of MGDA. Pure functions on numbers.

Convention: every objective is a reward, larger is better (the suite's reward vectors are maximized).

- `non_dominated`: which points no other point beats on every objective (moocore's C core).
- `hypervolume`: the volume dominated by a front and bounded by a reference point that every point must strictly
  beat (moocore: exact in any dimension; fast for the small K of alignment).
- `min_norm_weights`: MGDA's alpha* = argmin over the simplex of ||sum_k alpha_k g_k||^2, from the Gram matrix
  G_ij = g_i . g_j of the per-objective gradients (Desideri 2012; Sener & Koltun 2018, Alg. 2: Frank-Wolfe, here
  with away steps; the 2-objective closed form alpha = clip(((g2 - g1) . g2) / ||g1 - g2||^2, 0, 1)). Written
  here because it needs only the K x K Gram matrix, which no installed library takes as input.
- `controllability`: Spearman's rank correlation between the weight requested on an objective and the value
  achieved on it across a sweep (scipy.stats.spearmanr): 1 means more weight always bought more of it.
- `weight_grid`: the preference weights of a sweep, evenly spaced on the simplex, corners included.
- `parse_reference_point`: a hypervolume reference point from 'name=value,...' or values in objective order.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import moocore
import numpy as np
import torch
import torch.distributed as dist
from scipy.stats import spearmanr


def _as_points(points, where: str) -> np.ndarray:
    array = np.asarray(points, dtype=float)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{where}: expected a non-empty [num_points, num_objectives] array, got shape {array.shape}")
    if not np.isfinite(array).all():
        row = int(np.argwhere(~np.isfinite(array))[0, 0])
        raise ValueError(f"{where}: point {row} is {array[row].tolist()}; every value must be finite")
    return array


def non_dominated(points) -> np.ndarray:
    """Boolean mask [P] of the points that no other point dominates (>= on every objective, > on one).

    Duplicates of a non-dominated point are all kept: two checkpoints that land on the same point are both on
    the front.
    """
    return moocore.is_nondominated(_as_points(points, "non_dominated"), maximise=True, keep_weakly=True)


def hypervolume(points, reference_point: Sequence[float]) -> float:
    """Volume of the region that the points dominate and that dominates `reference_point` (maximization).

    The reference point must be strictly worse than every point on every objective: a point that does not beat
    it would silently contribute nothing, which hides a badly chosen reference, so it is an error instead.
    """
    array = _as_points(points, "hypervolume")
    reference = np.asarray(reference_point, dtype=float)
    if reference.shape != (array.shape[1],):
        raise ValueError(f"hypervolume: reference point has {reference.size} values for {array.shape[1]} objectives")
    if not np.isfinite(reference).all():
        raise ValueError(f"hypervolume: reference point {reference.tolist()} must be finite")
    not_beaten = ~(array > reference).all(axis=1)
    if not_beaten.any():
        row = int(np.argmax(not_beaten))
        raise ValueError(f"hypervolume: reference point {reference.tolist()} does not lie strictly below point {row} "
                         f"{array[row].tolist()} on every objective; choose a worse reference point")
    return float(moocore.hypervolume(array, ref=reference, maximise=True))


def default_reference_point(points, margin: float = 0.1) -> np.ndarray:
    """The nadir (worst value per objective) moved out by `margin` times each objective's range (1 if flat).

    Only for a first look: hypervolumes are comparable across runs only under the same, stated reference point.
    """
    array = _as_points(points, "default_reference_point")
    spread = array.max(axis=0) - array.min(axis=0)
    return array.min(axis=0) - margin * np.where(spread > 0, spread, 1.0)


def _two_objective_min_norm(g11: float, g12: float, g22: float) -> float:
    """alpha on g1 for min ||alpha g1 + (1 - alpha) g2||^2: clip(((g2 - g1) . g2) / ||g1 - g2||^2, 0, 1)."""
    distance = g11 - 2.0 * g12 + g22
    if distance <= 1e-12 * max(g11, g22, 1e-30):  # identical gradients: every alpha gives the same vector
        return 0.5
    return float(np.clip((g22 - g12) / distance, 0.0, 1.0))


def min_norm_weights(gram, max_iterations: int = 1000, tolerance: float = 1e-10) -> np.ndarray:
    """MGDA's weights alpha* in the simplex minimizing ||sum_k alpha_k g_k||^2 = alpha^T G alpha.

    K = 2: the closed form. K > 2: Frank-Wolfe from the uniform point with away steps (Lacoste-Julien & Jaggi
    2015), so that a vertex that should end at weight 0 really gets there (plain Frank-Wolfe only approaches it
    at rate 1/t). Each step is an exact line search on the quadratic; it stops when the Frank-Wolfe duality gap
    alpha^T G alpha - min_t (G alpha)_t falls below `tolerance` times the largest squared gradient norm.
    Identical gradients give uniform weights (the gap is 0 at the start).
    """
    gram = np.asarray(gram, dtype=float)
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1] or gram.shape[0] == 0:
        raise ValueError(f"min_norm_weights: expected a square [K, K] Gram matrix, got shape {gram.shape}")
    if not np.isfinite(gram).all():
        raise ValueError("min_norm_weights: the Gram matrix has a NaN or inf entry (a gradient is not finite)")
    if not np.allclose(gram, gram.T, rtol=1e-5, atol=1e-8 * max(1.0, np.abs(gram).max())):
        raise ValueError("min_norm_weights: the Gram matrix must be symmetric (G_ij = g_i . g_j)")
    k = gram.shape[0]
    if k == 1:
        return np.ones(1)
    if k == 2:
        alpha = _two_objective_min_norm(gram[0, 0], gram[0, 1], gram[1, 1])
        return np.array([alpha, 1.0 - alpha])
    scale = max(float(np.diag(gram).max()), 1e-30)
    alpha = np.full(k, 1.0 / k)
    vertices = np.eye(k)
    for _ in range(max_iterations):
        gradient = gram @ alpha  # half the gradient of alpha^T G alpha; (G alpha)_t = g_t . v
        toward = int(np.argmin(gradient))
        if alpha @ gradient - gradient[toward] <= tolerance * scale:  # Frank-Wolfe gap: optimal to tolerance
            break
        support = np.flatnonzero(alpha > 0)
        away = int(support[np.argmax(gradient[support])])
        if alpha @ gradient - gradient[toward] >= gradient[away] - alpha @ gradient:
            direction, max_step = vertices[toward] - alpha, 1.0
        else:
            direction, max_step = alpha - vertices[away], alpha[away] / max(1.0 - alpha[away], 1e-30)
        curvature = direction @ gram @ direction
        step = max_step if curvature <= 0 else min(max_step, max(0.0, -(direction @ gradient) / curvature))
        alpha = np.clip(alpha + step * direction, 0.0, None)
        alpha /= alpha.sum()
    return alpha


def controllability(requested_weights, achieved_values, objective_names: Sequence[str]) -> dict[str, dict]:
    """Per objective, Spearman's rho (and its p-value) between the weight asked for and the value achieved.

    requested_weights, achieved_values: [P, K] (one row per sweep point). An objective whose requested weight
    or achieved value never changes has no defined rank correlation: rho is None there.
    """
    weights = _as_points(requested_weights, "controllability (weights)")
    values = _as_points(achieved_values, "controllability (values)")
    if weights.shape != values.shape or weights.shape[1] != len(objective_names):
        raise ValueError(f"controllability: weights {weights.shape}, values {values.shape} and "
                         f"{len(objective_names)} objective names do not match")
    if weights.shape[0] < 3:
        raise ValueError(f"controllability: need at least 3 sweep points for a rank correlation, "
                         f"got {weights.shape[0]}")
    result = {}
    for column, name in enumerate(objective_names):
        if np.ptp(weights[:, column]) == 0 or np.ptp(values[:, column]) == 0:
            result[name] = {"spearman": None, "p_value": None}
            continue
        rho, p_value = spearmanr(weights[:, column], values[:, column])
        result[name] = {"spearman": float(rho), "p_value": float(p_value)}
    return result


def weight_grid(num_points: int, num_objectives: int) -> list[list[float]]:
    """Evenly spaced points of the simplex: for K = 2, (i/(n-1), 1 - i/(n-1)); for K > 2, every vector of
    multiples of 1/(n-1) summing to 1 (the simplex lattice), so the corners are always included."""
    if num_points < 2 or num_objectives < 1:
        raise ValueError(f"weight grid: need num_points >= 2 and at least one objective, got {num_points}, "
                         f"{num_objectives}")
    steps = num_points - 1
    grid = [list(c) for c in itertools.product(range(steps, -1, -1), repeat=num_objectives) if sum(c) == steps]
    return [[c / steps for c in point] for point in grid]


def parse_reference_point(text, names: list[str]) -> np.ndarray:
    """'name=value,...' or 'v1,v2,...' in objective order; every objective needs a value (any real number)."""
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if all("=" in p for p in parts):
            mapping = dict(p.split("=", 1) for p in parts)
            unknown = sorted(set(mapping) - set(names))
            missing = [n for n in names if n not in mapping]
            if unknown or missing:
                raise ValueError(f"reference point '{text}': unknown {unknown}, missing {missing}; objectives are "
                                 f"{names}")
            parts = [mapping[n] for n in names]
        text = parts
    values = np.asarray([float(v) for v in text], dtype=float)
    if values.shape != (len(names),):
        raise ValueError(f"reference point: {values.size} values for {len(names)} objectives {names}")
    return values


def mgda_combination(flat_gradients: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha* [K], direction sum_k alpha_k g_k [D]) from this process's per-objective gradients [K, D].

    Under data parallelism each g_k is first averaged over the processes, as DDP averages the gradient of one loss:
    the min-norm problem is solved on the global batch's gradients, identically on every process.
    """
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        flat_gradients = flat_gradients.clone()
        dist.all_reduce(flat_gradients)
        flat_gradients /= dist.get_world_size()
    gram = (flat_gradients.double() @ flat_gradients.double().T).cpu().numpy()
    alpha = torch.as_tensor(min_norm_weights(gram), dtype=flat_gradients.dtype, device=flat_gradients.device)
    return alpha, alpha @ flat_gradients
