"""How many test inputs get the wrong most likely task, by the router's LDA and by richer classifiers
on the same features (docs/results.md, "What the router reads, against the routed gap").

Usage: python router_classifiers.py [SEED ...]   (needs ../shared/data/CL_Benchmark and MiniLM)

The features are the router's default read (layer 3, first 64 tokens) of `cl-benchmark-4` at
1000 train / 500 test per task, sampled with each seed as `clora run` samples them. Counted:
every wrong guess, and the ones whose guessed task has another label set (their answer cannot
be right; amazon and yelp share theirs). Classifiers: the router's LDA over tasks; LDA over
(task, label) components with the task scored by the log-sum-exp over its components (each
task stores one mean per label); regularised discriminant analysis (Friedman 1989: each task's
covariance blended with the pooled one); logistic regression fitted on every training input
(an upper bound for a router that kept raw inputs, which clora's does not).
"""
import sys

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from clora.config import RunConfig
from clora.routing.lda import TaskStats, shared_precision, squared_distances
from clora.workflows.run import prepare


def features(seed):
    cfg = RunConfig(stream="cl-benchmark-4", data_dir="../shared/data/CL_Benchmark", max_train=1000, max_test=500,
                    seed=seed, progress=False)
    s = prepare(cfg)
    with torch.no_grad():
        tr = [s.family.router_features([e.text for e in t.train]).double() for t in s.tasks]
        te = [s.family.router_features([e.text for e in t.test]).double() for t in s.tasks]
    return s.tasks, tr, te, [[e.target for e in t.train] for t in s.tasks]


def rda_guess(stats, x, lam, shrink):
    pooled = sum(s.scatter for s in stats) / (sum(s.count for s in stats) - len(stats))
    d = pooled.shape[0]
    scores = []
    for s in stats:
        cov = (1 - lam) * pooled + lam * s.scatter / (s.count - 1)
        cov = (1 - shrink) * cov + shrink * torch.eye(d, dtype=cov.dtype) * torch.trace(cov) / d
        factor = torch.linalg.cholesky(cov)
        diff = x - s.mean
        scores.append((diff * torch.cholesky_solve(diff.T, factor).T).sum(1) + 2 * torch.log(factor.diagonal()).sum())
    return torch.stack(scores, 1).argmin(1)


def per_label_guess(tr, labels, x, shrink):
    comps, owner = [], []
    for t, feats in enumerate(tr):
        for lab in sorted(set(labels[t])):
            comps.append(TaskStats.of(feats[torch.tensor([i for i, l in enumerate(labels[t]) if l == lab])]))
            owner.append(t)
    d2 = squared_distances(x, torch.stack([c.mean for c in comps]), shared_precision(comps, shrink))
    owner = torch.tensor(owner)
    return torch.stack([torch.logsumexp(-d2[:, owner == t] / 2, 1) for t in range(len(tr))], 1).argmax(1)


def main(seeds):
    for seed in seeds:
        tasks, tr, te, labels = features(seed)
        x, y = torch.cat(te), torch.cat([torch.full((len(f),), i) for i, f in enumerate(te)])
        label_set = [tuple(t.labels) for t in tasks]

        def show(name, guess):
            cross = sum(label_set[a] != label_set[b] for a, b in zip(y.tolist(), guess.tolist()))
            print(f"seed {seed} {name}: wrong task {(guess != y).sum().item()} of {len(y)}, another label set {cross}",
                  flush=True)

        stats = [TaskStats.of(f) for f in tr]
        show("LDA (the router)", squared_distances(x, torch.stack([s.mean for s in stats]),
                                                   shared_precision(stats, 0.1)).argmin(1))
        show("LDA per label", per_label_guess(tr, labels, x, 0.1))
        for lam in (0.1, 0.3):
            show(f"RDA lambda {lam}", rda_guess(stats, x, lam, 0.1))
        owners = np.concatenate([[i] * len(f) for i, f in enumerate(tr)])
        fit = LogisticRegression(C=10, max_iter=3000).fit(torch.cat(tr).numpy(), owners)
        show("logistic regression", torch.from_numpy(fit.predict(x.numpy())))


if __name__ == "__main__":
    main([int(s) for s in sys.argv[1:]] or [0, 1, 2])
