"""Which co-visitation damping to serve, chosen by the stream's own next events.

The damping (``CovisitTable.damping``) trades head against tail: 0.25 lets popular
followers through, 0.5 (the cosine) keeps new and niche ones in reach. Which is better
depends on the stream (on MovieLens the low one, on a shop of arriving items the high
one), and an early prefix does not tell. So the stream evaluates itself, prequentially:
for a sample of scored users the top-``k`` unseen co-visitation candidates under every
candidate damping are remembered; when the user's next event arrives, each damping
whose top-``k`` held that item is credited. Each damping's hit rate is a decayed
running mean (half-life ``half_life`` evaluations). The one served is the highest
damping (the one whose lists reach furthest into the tail) that the stream has not
shown to hold fewer next items than the best: its deficit in hits is within ``z``
standard errors of a paired (McNemar) comparison, ``sqrt`` of the evaluations where
exactly one of the two held the item. A tail-reaching damping is given up only for a
gain in hits the stream can tell from noise. Pure; no I/O.

>>> chooser = DampingChooser((0.25, 0.5), default=0.5, min_evidence=1.5)
>>> chooser.remember(["u"], [1], np.array([[[7, 8], [9, 3]]]))
>>> chooser.credit(["u"], [2], [np.array([5, 7])])  # u's next item: row 7
1
>>> chooser.remember(["u"], [2], np.array([[[4, 1], [6, 2]]]))
>>> chooser.credit(["u"], [3], [np.array([5, 7, 4])])
1
>>> chooser.rates().round(2).tolist(), chooser.served()
([1.0, 0.0], 0.25)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from inference.covisit import CovisitTable

IntArray = npt.NDArray[np.int64]


@dataclass
class DampingChooser:
    """Serves the damping whose co-visitation candidates held users' next items most.

    Attributes:
        choices: The dampings compared (each one's candidates are computed for the
            sampled users).
        default: Served until ``min_evidence`` evaluations are in.
        k: Candidates per damping that count as holding the next item.
        sample_every: One scored user in this many is remembered.
        half_life: Evaluations over which an old hit weighs half.
        z: Standard errors of hit deficit (paired, against the best) within which a
            higher damping is still served.
        min_evidence: Decayed count of evaluations before the rates decide.
        max_pending: Users remembered at once (the least recently sampled go first).
    """

    choices: tuple[float, ...] = (0.25, 0.35, 0.5)
    default: float = 0.35
    k: int = 10
    sample_every: int = 4
    half_life: float = 2000.0
    z: float = 1.0
    min_evidence: float = 300.0
    max_pending: int = 100_000
    hits: npt.NDArray[np.float64] = field(init=False)
    apart: npt.NDArray[np.float64] = field(init=False)
    evaluations: float = field(init=False, default=0.0)
    _pending: dict[str, tuple[int, IntArray]] = field(init=False, default_factory=dict)
    _tick: int = field(init=False, default=0)
    # ``served``'s inputs and answer (the arrays held, not their ids: ``credit``
    # replaces them and they are read-only, so the same objects mean the same evidence)
    _served: tuple[np.ndarray, np.ndarray, tuple[float, ...], float] | None = field(
        init=False, default=None, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not self.choices:
            raise ValueError("choices must not be empty")
        self.hits = _read_only(np.zeros(len(self.choices)))
        # apart[i, j]: decayed evaluations where choice i held the next item and j did not
        self.apart = _read_only(np.zeros((len(self.choices), len(self.choices))))

    def rates(self) -> npt.NDArray[np.float64]:
        """Each choice's decayed hit rate (0 before any evaluation)."""
        return self.hits / max(self.evaluations, 1e-12)

    def served(self) -> float:
        """The damping to score with now (computed again only when the evidence moved)."""
        scalars = (self.evaluations, self.min_evidence, self.z, self.default, *self.choices)
        held = self._served
        if (
            held is not None
            and held[0] is self.hits
            and held[1] is self.apart
            and held[2] == scalars
        ):
            return held[3]
        answer = self._served_now()
        self._served = (self.hits, self.apart, scalars, answer)
        return answer

    def _served_now(self) -> float:
        if self.evaluations < self.min_evidence:
            return self.default
        best = int(np.argmax(self.hits))
        deficit = self.hits[best] - self.hits
        noise = np.sqrt(self.apart[best] + self.apart[:, best])
        good = deficit <= self.z * noise
        order = np.argsort(self.choices)  # highest damping among the good ones
        best = [i for i in order.tolist() if good[i]][-1]
        return float(self.choices[best])

    def sample(self, n: int) -> npt.NDArray[np.bool_]:
        """Which of the next ``n`` scored users to remember (every ``sample_every``-th)."""
        ticks = self._tick + np.arange(n)
        self._tick += n
        return ticks % max(self.sample_every, 1) == 0

    def remember(self, users: Sequence[str], n_events: Sequence[int], tops: npt.ArrayLike) -> None:
        """Remember ``tops`` (``(U, len(choices), k)`` rows, -1 padded) of users as they
        stand after ``n_events`` events; an extra last row per user holds what the other
        sources find (an event whose item is there is no evaluation)."""
        t = np.asarray(tops, np.int64)
        pending = self._pending
        for user, n, top in zip(users, n_events, t, strict=True):
            pending.pop(user, None)  # re-insert: least recently sampled first
            pending[user] = (int(n), top)
        while len(pending) > self.max_pending:
            del pending[next(iter(pending))]

    def clear_pending(self) -> None:
        """Forget the remembered candidates (their rows: a bundle swap re-numbers rows)."""
        self._pending.clear()

    def credit(
        self, users: Sequence[str], n_events: Sequence[int], histories: Sequence[IntArray]
    ) -> int:
        """Credit the dampings that held each remembered user's next item; returns how
        many evaluations were made.

        ``histories``: each user's history rows, oldest first, ending at event
        ``n_events``. The remembered list is evaluated on the first event after it;
        an item the user had already touched (or an unknown one) is not an evaluation,
        as in the prequential protocol.
        """
        made = 0
        for user, n, hist in zip(users, n_events, histories, strict=True):
            entry = self._pending.get(user)
            if entry is None or n <= entry[0]:
                continue
            del self._pending[user]
            pos = hist.size - (n - entry[0])
            if pos < 0:
                continue  # the next event has left the bounded history
            nxt = int(hist[pos])
            if nxt < 0 or (hist[:pos] == nxt).any():
                continue
            held = (entry[1] == nxt).any(axis=1)
            if held.size > len(self.choices):
                if held[-1]:
                    continue  # found without co-visitation: says nothing of the damping
                held = held[:-1]
            decay = 0.5 ** (1.0 / self.half_life)
            self.hits = _read_only(self.hits * decay + held)
            self.apart = _read_only(self.apart * decay + np.outer(held, ~held))
            self.evaluations = self.evaluations * decay + 1.0
            made += 1
        return made


def unseen_top(rows: IntArray, exclude: Sequence[IntArray], k: int) -> IntArray:
    """The first ``k`` of each user's ranked ``rows`` (``(U, K)``, -1 padded) that are
    not in the user's ``exclude`` rows; -1 padded.

    >>> unseen_top(np.array([[4, 2, 9, -1]]), [np.array([2])], 2).tolist()
    [[4, 9]]
    """
    return _unseen_top(rows.tolist(), [set(ex.tolist()) for ex in exclude], k)


def _unseen_top(rows: list[list[int]], exclude: Sequence[set[int]], k: int) -> IntArray:
    """``unseen_top`` over plain lists and sets (a user's set serves every damping)."""
    out = np.full((len(rows), k), -1, np.int64)
    for i, (row, ex) in enumerate(zip(rows, exclude, strict=True)):
        keep = [r for r in row if r >= 0 and r not in ex][:k]
        out[i, : len(keep)] = keep
    return out


def remember_candidates(
    chooser: DampingChooser,
    table: CovisitTable,
    history: tuple[IntArray, npt.NDArray[np.float32]],
    served_rows: IntArray,
    users: Sequence[str],
    n_events: Sequence[int],
    exclude: Callable[[int], IntArray],
    candidates: int,
    others: Callable[[IntArray], IntArray] | None = None,
    shared: IntArray | None = None,
    *,
    sampled: npt.NDArray[np.bool_] | None = None,
    scored: Mapping[float, IntArray] | None = None,
) -> None:
    """For the chooser's sample of ``users``, each choice's unseen top-``k``.

    ``history``: ``recent_rows`` of the users (the table's query); ``served_rows``: the
    candidates just scored under ``table.damping`` (reused for that choice). The other
    choices score the sampled users again, all in one ``CovisitTable.score_each``.
    ``exclude(i)``: the rows user ``i`` has touched (asked for the sample only).
    ``others(pick)``: ``(P, K)`` rows the list's other sources rank first for users
    ``pick`` (the model's nearest items); a next item among their unseen top-``k`` is
    found without co-visitation, so it does not judge the damping. ``shared``: rows
    every list holds whoever the user (the trending head), counted with ``others``.
    ``sampled``: ``chooser.sample(len(users))`` if the caller drew it already;
    ``scored``: rows of every user under some of the choices, scored already.
    """
    pick = np.flatnonzero(chooser.sample(len(users)) if sampled is None else sampled)
    if not pick.size:
        return
    given = dict(scored or {})
    given.setdefault(table.damping, served_rows)
    missing = [d for d in chooser.choices if d not in given]
    if missing:
        hist, weight = history[0][pick], history[1][pick]
        each = table.score_each(hist, weight, candidates, missing)
        for d, (rows, _) in zip(missing, each, strict=True):
            given[d] = np.full((len(users), rows.shape[1]), -1, np.int64)
            given[d][pick] = rows
    seen = [set(exclude(i).tolist()) for i in pick.tolist()]
    tops = [_unseen_top(given[d][pick].tolist(), seen, chooser.k) for d in chooser.choices]
    if others is None:
        held = np.stack(tops, axis=1)
    else:
        # (U, choices + 1, width), -1 padded: each choice's top, then what the other
        # sources find followed by the shared rows (written in place: np.pad's and
        # np.hstack's fixed costs were most of a sampled call's)
        extra = 0 if shared is None else shared.size
        n_c, k = len(tops), chooser.k
        held = np.full((pick.size, n_c + 1, k + extra), -1, np.int64)
        for c, top in enumerate(tops):
            held[:, c, :k] = top
        held[:, n_c, :k] = _unseen_top(others(pick).tolist(), seen, k)
        if shared is not None and extra:
            held[:, n_c, k:] = shared
    chooser.remember(
        [users[i] for i in pick.tolist()],
        [n_events[i] for i in pick.tolist()],
        held,
    )


def _read_only(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``a``, made read-only: ``served`` keys its answer on the arrays' identity."""
    a.setflags(write=False)
    return a
