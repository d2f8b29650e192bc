"""The chain strategy's solver: the globally best ordered chain of vertebra candidates."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from labeling_pipeline.localization.search import Localizer


@dataclass
class ChainProblem:
    """Candidates (x_mm, y_mm, score; score NaN for a gap) per chain vertebra, caudal first,
    the score of a vertebra out of view and of a gap, and each candidate's anchor evidence."""

    names: list[str]
    candidates: list[list[tuple[float, float, float]]]
    missing_unary: float
    gap_score: float
    anchor_bonus: list[np.ndarray]


@dataclass
class ChainChoice:
    """An assignment of candidates (index, or None for missing) to the chain's vertebrae."""

    score: float
    assignment: list[int | None]


class ChainSolver:
    """Best chain by dynamic programming over (previous candidate, current candidate) states,
    so that the turn between consecutive steps is scored exactly. Vertebrae may be missing
    only at the ends of the chain (outside the field of view)."""

    def __init__(self, localizer: Localizer, problem: ChainProblem, scale: float = 1.0):
        s = localizer.settings
        names, candidates = problem.names, problem.candidates
        missing_unary, gap_score = problem.missing_unary, problem.gap_score
        self.scale = scale
        self.names = names
        self.candidates = candidates
        self.template_vector = localizer._template_step_vector
        self.optional = set(names) - set(localizer.vertebrae)  # context-only may always be missing
        self.inside = localizer.inside_view
        self.missing_unary = missing_unary
        self.turn_limit = localizer.domain.max_turn_deg
        self.turn_sigma = s.turn_sigma_deg
        framing = [localizer.framed_position(n) for n in names]
        self.unary = [
            np.array(
                [
                    s.similarity_weight * (c[2] if math.isfinite(c[2]) else gap_score)
                    - (
                        0.5 * (math.dist(c[:2], expected) / s.framing_sigma_mm) ** 2
                        if math.isfinite(s.framing_sigma_mm)
                        else 0.0
                    )
                    for c in cands
                ],
                dtype=np.float64,
            )
            + bonus
            for cands, expected, bonus in zip(
                candidates, framing, problem.anchor_bonus, strict=True
            )
        ]
        self.points = [
            np.array([(c[0], c[1]) for c in cands], dtype=np.float64).reshape(-1, 2)
            for cands in candidates
        ]
        # Pairwise log-priors (caudal i -> cranial i+1): the angle's, -inf outside the domain's
        # range; the distance's follows with the scale.
        self.angles: list[np.ndarray] = []
        self._log_distance: list[np.ndarray] = []  # log(distance / template distance)
        self._angle_prior: list[np.ndarray] = []
        self._distance_sigma = s.distance_sigma
        for i in range(len(names) - 1):
            a, b = self.points[i], self.points[i + 1]
            dx = b[None, :, 0] - a[:, None, 0]
            dy = b[None, :, 1] - a[:, None, 1]
            distance = np.hypot(dx, dy)
            angle = np.degrees(np.arctan2(dx, -dy))
            pair = localizer.domain.pair(names[i], names[i + 1])
            t_distance, t_angle = localizer.reference.step(names[i], names[i + 1])
            prior = -0.5 * (((angle - t_angle + 180) % 360 - 180) / s.angle_sigma_deg) ** 2
            inside = (
                (distance >= pair.min_mm)
                & (distance <= pair.max_mm)
                & (angle >= pair.min_deg)
                & (angle <= pair.max_deg)
            )
            self._angle_prior.append(np.where(inside, prior, -np.inf))
            self._log_distance.append(np.log(np.maximum(distance, 1e-6) / t_distance))
            self.angles.append(angle)
        self.pairwise = self._pairwise(scale)
        self._precompute()

    def _pairwise(self, scale: float) -> list[np.ndarray]:
        """Pairwise log-priors with the template's step lengths times ``scale``."""
        shift = math.log(scale)
        return [
            angle_prior - 0.5 * ((log_distance - shift) / self._distance_sigma) ** 2
            for angle_prior, log_distance in zip(self._angle_prior, self._log_distance, strict=True)
        ]

    def rescaled(self, scale: float) -> ChainSolver:
        """The same problem with the template's step lengths times ``scale`` (the image's own
        vertebra size): only the distance priors change."""
        other = copy.copy(self)
        other.scale = scale
        other.pairwise = self._pairwise(scale)
        return other

    def _precompute(self) -> None:
        """What every solve shares: turn priors between consecutive steps and, per vertebra
        and side, which candidates may end the chain there."""
        self.turn_priors: list[np.ndarray] = [np.zeros((0, 0, 0))]
        for i in range(1, len(self.names) - 1):
            turn = self.angles[i][None, :, :] - self.angles[i - 1][:, :, None]  # (k, j, l)
            turn = (turn + 180) % 360 - 180
            self.turn_priors.append(
                np.where(
                    np.abs(turn) <= self.turn_limit, -0.5 * (turn / self.turn_sigma) ** 2, -np.inf
                )
            )
        # Vertebrae may be left out beyond an end only if they are out of view: one template
        # step beyond the end candidate must fall outside the image (or within border_mm of
        # its edge). That depends only on the end candidates, so it is exact as a unary term.
        self.end_penalty: dict[tuple[int, int], np.ndarray] = {}
        for i in range(len(self.names)):
            for beyond in (i - 1, i + 1):
                penalty = np.zeros(len(self.points[i]))
                if 0 <= beyond < len(self.names) and self.names[beyond] not in self.optional:
                    tx, ty = self.template_vector(self.names[i], self.names[beyond])
                    for j, (x, y) in enumerate(self.points[i]):
                        if self.inside(x + tx, y + ty):
                            penalty[j] = -np.inf
                self.end_penalty[(i, beyond)] = penalty

    def _best(
        self, banned: tuple[int, list[int]] | None = None, present: int | None = None
    ) -> ChainChoice:
        """Best chain over every run start..end of present vertebrae (the others out of
        view): one forward pass per start scores every end at once. ``present``: only runs
        that include that vertebra."""
        n = len(self.names)
        unary = self.unary
        if banned is not None:
            unary = [u.copy() for u in self.unary]
            unary[banned[0]][list(banned[1])] = -np.inf
        best_score, best_path = -math.inf, [None] * n
        for start in range(n if present is None else present + 1):
            first = unary[start] + self.end_penalty[(start, start - 1)]
            if not first.size:
                continue
            single = first + self.end_penalty[(start, start + 1)]
            j = int(np.argmax(single))
            score = float(single[j]) + self.missing_unary * (n - 1)
            if score > best_score and present in (None, start):
                best_score, best_path = score, [None] * start + [j] + [None] * (n - start - 1)
            # state[k, j]: best score with vertebra e at candidate j and e-1 at candidate k.
            state: np.ndarray | None = None
            back: list[np.ndarray] = []
            for e in range(start + 1, n):
                if state is None:
                    state = first[:, None] + self.pairwise[start] + unary[e][None, :]
                else:
                    total = state[:, :, None] + self.turn_priors[e - 1] + self.pairwise[e - 1][None]
                    back.append(np.argmax(total, axis=0))  # best k for each (j, l)
                    state = np.max(total, axis=0) + unary[e][None, :]
                if not state.size:
                    break
                ended = state + self.end_penalty[(e, e + 1)][None, :]
                flat = int(np.argmax(ended))
                score = float(ended.flat[flat]) + self.missing_unary * (n - (e - start + 1))
                if score > best_score and (present is None or e >= present):
                    k, j = np.unravel_index(flat, ended.shape)
                    path = [int(j), int(k)]
                    for pointers in reversed(back):
                        path.append(int(pointers[path[-1], path[-2]]))
                    path.reverse()
                    best_score = score
                    best_path = [None] * start + path + [None] * (n - e - 1)
        return ChainChoice(best_score, best_path)

    def best(self) -> ChainChoice:
        return self._best()

    def best_without(self, index: int, choice: int | list[int]) -> ChainChoice:
        """The best chain that does not put vertebra ``index`` at candidate ``choice`` (or at
        any of a list of candidates)."""
        return self._best((index, [choice] if isinstance(choice, int) else choice))

    def best_with(self, index: int) -> ChainChoice:
        """The best chain that places vertebra ``index`` somewhere in the image."""
        return self._best(present=index)
