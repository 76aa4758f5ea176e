"""The data-diet recipe (Paul, Ganguli, Dziugaite, "Deep Learning on a Data Diet",
arXiv:2107.07075) on scikit-learn's bundled digits, with a numpy MLP, through sketchpipe.

1. Train a small model (one hidden ReLU layer, numpy) from several seeds for a few epochs
   and log every training example's logits after each early epoch through
   `sketchpipe.PruneScores` — the scores are EL2N averaged by example id over the seeds.
2. Keep the hardest 50 % (highest EL2N), a random 50 %, or all; retrain from scratch on each
   subset and measure test accuracy.
3. With injected label noise, measure how well EL2N finds the flipped labels (AUROC), and
   add the paper's remedy for noisy data: skip the very hardest (an offset) before keeping.

Needs numpy, pyarrow, scikit-learn (for the dataset only) and the sketchpipe package:

    pip install ./python scikit-learn
    python python/examples/data_diet.py [--seeds 5] [--noise 0.1] [--score-epoch 3]

It prints a Markdown table; docs/python.md shows the one measured last, with this command.
"""

from __future__ import annotations

import argparse

import numpy as np
import pyarrow as pa

import sketchpipe


def train(x, y, classes, seed, epochs, hidden=64, lr=0.1, batch=32, log=None):
    """Minibatch SGD on softmax cross-entropy; `log(epoch, logits)` after each epoch."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, np.sqrt(2 / x.shape[1]), (x.shape[1], hidden))
    b1 = np.zeros(hidden)
    w2 = rng.normal(0, np.sqrt(1 / hidden), (hidden, classes))
    b2 = np.zeros(classes)

    def forward(a):
        h = np.maximum(a @ w1 + b1, 0)
        return h, h @ w2 + b2

    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch):
            i = order[start : start + batch]
            h, z = forward(x[i])
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(i)), y[i]] -= 1.0
            g = p / len(i)
            gh = (g @ w2.T) * (h > 0)
            w2 -= lr * h.T @ g
            b2 -= lr * g.sum(axis=0)
            w1 -= lr * x[i].T @ gh
            b1 -= lr * gh.sum(axis=0)
        if log is not None:
            log(epoch, forward(x)[1])
    return lambda a: forward(a)[1].argmax(axis=1)


def auroc(scores, positive):
    """Area under the ROC curve of `scores` for the `positive` examples (rank statistic)."""
    ranks = np.empty(len(scores))
    ranks[np.argsort(scores, kind="stable")] = np.arange(1, len(scores) + 1)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return (ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5, help="runs whose EL2N is averaged")
    ap.add_argument("--score-epoch", type=int, default=3, help="the epoch EL2N is taken at")
    ap.add_argument("--epochs", type=int, default=30, help="epochs of each retraining")
    ap.add_argument("--retrain-seeds", type=int, default=5)
    ap.add_argument("--noise", type=float, default=0.1, help="share of training labels flipped")
    args = ap.parse_args()

    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.data / 16.0
    y = digits.target
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    train_i, test_i = order[:1200], order[1200:]
    x_train, x_test, y_test = x[train_i], x[test_i], y[test_i]
    classes = 10

    def experiment(y_train, label):
        ids = np.arange(len(y_train))
        scores = sketchpipe.PruneScores(id="id", label="label", logits="logits", run="run")
        for seed in range(args.seeds):

            def log(epoch, logits, seed=seed):
                if epoch == args.score_epoch:
                    scores.update(
                        pa.table(
                            {
                                "id": ids,
                                "run": np.full(len(ids), seed),
                                "label": y_train,
                                "logits": pa.FixedSizeListArray.from_arrays(
                                    pa.array(logits.reshape(-1)), classes
                                ),
                            }
                        )
                    )

            train(x_train, y_train, classes, 1000 + seed, args.score_epoch, log=log)
        by_id = scores.result()["scores"].sort_by("id")
        el2n = np.asarray(by_id.column("el2n").to_numpy())
        half = len(ids) // 2
        hardest = np.argsort(-el2n, kind="stable")
        subsets = {
            "all": ids,
            "hardest 50 %": hardest[:half],
            "random 50 %": np.random.default_rng(7).permutation(ids)[:half],
        }
        if label != "clean":
            offset = int(args.noise * len(ids))
            subsets[f"hardest 50 % after the top {offset}"] = hardest[offset : offset + half]
        rows = []
        for name, keep in subsets.items():
            acc = [
                (
                    train(x_train[keep], y_train[keep], classes, s, args.epochs)(x_test) == y_test
                ).mean()
                for s in range(args.retrain_seeds)
            ]
            rows.append((label, name, len(keep), float(np.mean(acc)), float(np.std(acc))))
        return rows, el2n

    results, _ = experiment(y[train_i], "clean")
    noisy = y[train_i].copy()
    flip = rng.random(len(noisy)) < args.noise
    noisy[flip] = (noisy[flip] + rng.integers(1, classes, flip.sum())) % classes
    noisy_rows, el2n = experiment(noisy, f"{args.noise:.0%} labels flipped")
    results += noisy_rows

    print(
        f"digits: 1200 train / {len(test_i)} test; EL2N at epoch {args.score_epoch}, "
        f"averaged over {args.seeds} seeds; test accuracy over {args.retrain_seeds} "
        f"retrainings of {args.epochs} epochs (mean ± std)\n"
    )
    print("| labels | kept | examples | test accuracy |")
    print("|---|---|---|---|")
    for label, name, n, mean, std in results:
        print(f"| {label} | {name} | {n} | {mean:.4f} ± {std:.4f} |")
    print(f"\nAUROC of EL2N at finding the {flip.sum()} flipped labels: {auroc(el2n, flip):.4f}")


if __name__ == "__main__":
    main()
