"""Leave-one-out with full ranking on a ratings file: freshet's model against baselines.

Each user's last event (by time, file order breaking ties) is the test case and the one
before it the validation case; every item the user rated before is excluded from the
ranking, and each target is ranked among all other items. freshet's retrieval model and
a SASRec-style baseline (``training.models.sasrec``: ID embeddings, BCE on one negative,
as in the paper) get the same wall-time budget on the same threads, each training until
the budget is spent and keeping its epoch best on validation NDCG@10; item-kNN
(``training.evaluation.baselines``) and most-popular
are fitted on the same training events. MovieLens titles and genres (``movies.csv``
next to the ratings) are the item content of freshet's content tower.

    .venv/bin/python -m bench.leave_one_out \\
        --ratings ../shared/data/ml-latest-small/ratings.csv --budget-s 300 --threads 1
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import torch

from bench.host import cpu_model
from schemas.events import CatalogEvent, InteractionEvent
from streams.core.file_reader import read_file
from training.data import build_log, leave_one_out
from training.evaluation.baselines import ItemKNN, MostPopular
from training.evaluation.protocols import Scorer, build_cases, evaluate
from training.models.retrieval import TorchScorer
from training.models.sasrec import SASRecConfig, train_sasrec
from training.train import CAUSAL, train

NO_GENRES = "(no genres listed)"
SHARED_RATINGS = Path("../shared/data/ml-latest-small/ratings.csv")
"""Where the shared real data set lives, relative to the repository root."""


def movielens_events(
    ratings: Path, content: bool = True
) -> Iterator[InteractionEvent | CatalogEvent]:
    """The ratings as interactions and, when ``movies.csv`` sits next to them, the catalog.

    Catalog events come first (time 0), so every movie has its title and genres.
    """
    movies = ratings.parent / "movies.csv"
    if content and movies.is_file():
        with movies.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                genres = row["genres"]
                yield CatalogEvent(
                    event_id=f"movie-{row['movieId']}",
                    op="upsert",
                    item_id=row["movieId"],
                    ts=0,
                    categories=() if genres == NO_GENRES else tuple(genres.split("|")),
                    text=row["title"],
                )
    for line, event in read_file(ratings):
        if not isinstance(event, InteractionEvent):
            raise ValueError(f"{ratings}:{line}: {event}")
        yield event


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", type=Path, default=SHARED_RATINGS)
    parser.add_argument("--budget-s", type=float, default=300.0, help="Training wall time each.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--history-len", type=int, default=50)
    parser.add_argument("--no-content", action="store_true", help="Ignore movies.csv.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    log = build_log(movielens_events(args.ratings, not args.no_content))
    split = leave_one_out(log)
    # The budget is the stopping rule for both; each keeps its best epoch on validation.
    sasrec_config = SASRecConfig(
        patience=10_000, time_budget_s=args.budget_s, threads=args.threads, seed=args.seed
    )
    cases = build_cases(log, split, "test", sasrec_config.max_len, None, args.seed)
    print(
        f"conditions: {cpu_model()}, torch {torch.__version__}, threads {args.threads}, "
        f"data {args.ratings} ({log.n_events} events, {log.n_users} users, {log.n_items} items, "
        f"content {'off' if args.no_content else 'movies.csv'}), {len(cases)} test cases, "
        f"training budget {args.budget_s:.0f} s each, load {time.perf_counter() - t0:.1f} s"
    )
    config = replace(
        CAUSAL,
        history_len=args.history_len,
        epochs=10_000,
        patience=10_000,
        time_budget_s=args.budget_s,
        threads=args.threads,
        seed=args.seed,
    )
    fitted = train(log, split, config, show=False)
    best = fitted.history[fitted.best_epoch - 1]
    print(
        f"freshet: {len(fitted.history)} epochs in {fitted.seconds:.0f} s, best epoch "
        f"{fitted.best_epoch} (valid NDCG@10 {best.valid['ndcg@10']:.4f}), "
        f"{fitted.samples / fitted.seconds:.0f} predicted positions/s incl. validation"
    )
    sasrec = train_sasrec(log, split, sasrec_config)
    print(
        f"sasrec: {sasrec.valid_ndcg[-1][0]} epochs in {sasrec.seconds:.0f} s, best epoch "
        f"{sasrec.best_epoch} (valid NDCG@10 {max(v for _, _, v in sasrec.valid_ndcg):.4f})"
    )
    scorers: list[Scorer] = [
        TorchScorer(fitted.model),
        sasrec.scorer(),
        ItemKNN(log, split.train),
        MostPopular(log, split.train),
    ]
    popularity = log.popularity(split.train)
    rows = [(s.name, evaluate(s, cases, popularity).metrics) for s in scorers]
    base = rows[1][1]["hr@10"]
    print(
        f"{'model':<14} {'HR@10':>7} {'± s.e.':>7} {'NDCG@10':>8} {'MRR':>7} {'tail':>6} "
        f"{'vs sasrec':>9}"
    )
    for name, mt in rows:
        hr, n = mt["hr@10"], mt["cases"]
        print(
            f"{name:<14} {hr:7.4f} {math.sqrt(hr * (1 - hr) / n):7.4f} {mt['ndcg@10']:8.4f} "
            f"{mt['mrr']:7.4f} {mt['long_tail_share']:6.3f} "
            f"{hr / base if base else float('nan'):8.2f}x"
        )


if __name__ == "__main__":
    main()
