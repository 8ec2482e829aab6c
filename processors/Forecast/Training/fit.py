"""Baselines and the training loop."""
import copy
import time

import numpy as np
import torch
import torch.nn.functional as F

import evaluate as ev


# ---------------------------------------------------------------- baselines
def lvcf(X):
    return np.repeat(X[:, -1:], 12, axis=1)


class LinearBaseline:
    """GlucoBench's linear regression: least squares from the 96 raw inputs (+ intercept) to the
    12 targets, fitted on the training people; quantiles from a Gaussian with the per-step residual
    std on the training people."""

    def fit(self, X, Y):
        A = np.c_[X.astype(np.float64), np.ones(len(X))]
        self.W = np.linalg.lstsq(A, Y.astype(np.float64), rcond=None)[0]
        self.sd = (self.predict(X) - Y).std(axis=0)
        return self

    def predict(self, X):
        return np.c_[X.astype(np.float64), np.ones(len(X))] @ self.W


# ---------------------------------------------------------------- training
def gaussian_nll(mean, std, y, scale):
    z = (y - mean) / std
    return (torch.log(std / scale) + 0.5 * z * z).mean()


def train_model(model, Xtr, Ytr, Xva, Yva, epochs=60, mse_epochs=10, lr=2e-3, wd=1e-4, batch=256,
                seed=1, log=print, select="nll", augment=0.0, ema=0.0, sample_p=None):
    """MSE on the mean for the first mse_epochs (warm start), then Gaussian NLL on mean and std.
    Cosine learning-rate decay; the checkpoint with the best validation score (deterministic
    forward, dropout off) over the NLL epochs is kept."""
    torch.manual_seed(seed)
    rng = np.random.RandomState(seed)
    Xtr_t, Ytr_t = torch.as_tensor(Xtr), torch.as_tensor(Ytr)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    steps_per_epoch = int(np.ceil(len(Xtr) / batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                pct_start=0.1, anneal_strategy="cos")
    scale = model.delta_scale
    best, best_state, hist = np.inf, None, []
    # exponential moving average of the weights (ema > 0): validated, selected and kept instead of
    # the raw weights; lowers the variance of the final model on this small data set
    ema_model = copy.deepcopy(model) if ema > 0 else None
    t0 = time.time()
    for ep in range(epochs):
        model.train()
        perm = torch.as_tensor(rng.permutation(len(Xtr)) if sample_p is None
                               else rng.choice(len(Xtr), len(Xtr), replace=True, p=sample_p))
        use_nll = ep >= mse_epochs
        tot = 0.0
        for i in range(steps_per_epoch):
            idx = perm[i * batch:(i + 1) * batch]
            xb, yb = Xtr_t[idx], Ytr_t[idx]
            if augment > 0:
                # amplitude jitter around the last value: x' = last + a (x - last), same for y
                last = xb[:, -1:]
                a = torch.exp(torch.randn(len(idx), 1) * augment)
                xb, yb = last + a * (xb - last), last + a * (yb - last)
            mean, std = model(xb)
            if use_nll:
                loss = gaussian_nll(mean, std, yb, scale)
            else:
                loss = F.mse_loss(mean / scale, yb / scale)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss) * len(idx)
            if ema_model is not None:
                with torch.no_grad():
                    d = ema if use_nll else 0.0  # track the raw weights during the MSE warm start
                    for pe, pm_ in zip(ema_model.parameters(), model.parameters()):
                        pe.mul_(d).add_(pm_.detach(), alpha=1 - d)
        vmodel = ema_model if ema_model is not None else model
        # several validation populations (Xva a list of (X, Y)): the mean of their scores
        vsets = Xva if isinstance(Xva, list) else [(Xva, Yva)]
        pms, nlls = [], []
        for Xv, Yv in vsets:
            m, s = ev.deterministic(vmodel, Xv)
            pms.append(ev.point_metrics(m, Yv))
            nlls.append(float(gaussian_nll(torch.as_tensor(m), torch.as_tensor(s), torch.as_tensor(Yv), scale)))
        pm = {k: float(np.mean([p[k] for p in pms])) for k in pms[0]}
        nll = float(np.mean(nlls))
        score = nll if (select == "nll" and use_nll) else pm["rmse_mean"] if select == "rmse" or not use_nll else nll
        if use_nll and score < best:
            best, best_state = score, copy.deepcopy(vmodel.state_dict())
        hist.append((ep, tot / len(Xtr), pm["rmse_median"], pm["rmse_mean"], nll))
        if log and (ep % 10 == 0 or ep == epochs - 1):
            log(f"  ep {ep:3d} train {tot/len(Xtr):.4f} val rmse_med {pm['rmse_median']:.3f} "
                f"rmse {pm['rmse_mean']:.3f} nll {nll:.4f} ({time.time()-t0:.0f}s)")
    if best_state is not None:
        model.load_state_dict(best_state)
    return model, hist, time.time() - t0


def fit_temperature(mus, sds, y, grid=None):
    """Scalar multiplier on every sample's std minimising the validation calibration error of the
    N-sample mixture (ties broken toward 1)."""
    grid = np.round(np.arange(0.50, 2.001, 0.01), 2) if grid is None else grid
    best = None
    for t in grid:
        ce, _ = ev.calibration_from_pit(ev.mixture_pit(mus, sds * t, y))
        key = (round(ce, 4), abs(t - 1))
        if best is None or key < best[0]:
            best = (key, t, ce)
    return float(best[1]), float(best[2])


def fit_blend_weight(net_mus, lr_pred, y, grid=None):
    """Weight w of the network in mean = w * net_mean + (1 - w) * LR(x): the grid value (0.00 ... 1.00,
    step 0.05) with the lowest sqrt-median-MSE (the headline metric) of the blend's point forecast
    (mean over the MC samples) on the given (validation) people; ties broken toward the larger w.
    net_mus: [n, N, 12] MC means of the network; lr_pred: [n, 12]. -> (w, {w: score})"""
    grid = np.round(np.arange(0.0, 1.0001, 0.05), 2) if grid is None else grid
    net_mean = np.asarray(net_mus, dtype=np.float64).mean(axis=1)
    scores = {float(w): round(ev.point_metrics(w * net_mean + (1 - w) * lr_pred, y)["rmse_median"], 4)
              for w in grid}
    w = min(scores, key=lambda k: (scores[k], -k))
    return float(w), {f"{k:.2f}": v for k, v in scores.items()}


@torch.no_grad()
def torch_latency_us(model, batch=1024, reps=30, threads=1):
    """Median torch CPU time per sample (dropout active, as at inference), batch 1024, 1 thread:
    wall clock and this thread's CPU time (the latter is robust to other processes on the cores)."""
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    model.train()
    x = torch.randn(batch, 96) * 20 + 120
    for _ in range(5):
        model(x)
    ts, cs = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.thread_time()
        model(x)
        ts.append(time.perf_counter() - t0)
        cs.append(time.thread_time() - c0)
    model.eval()
    torch.set_num_threads(prev)
    return {"wall_us": float(np.median(ts) / batch * 1e6), "cpu_us": float(np.median(cs) / batch * 1e6)}


def weighted_quantile(values, weights, q):
    """Quantiles of a weighted sample; equal weights give numpy's default (linear) rule."""
    o = np.argsort(values, kind="stable")
    v, w = values[o], weights[o] / weights.sum()
    n = len(v)
    # position of sample i on [0, 1]: the linear rule's i / (n - 1) generalised to weights
    c = np.cumsum(w) - w
    pos = c / c[-1] if c[-1] > 0 else np.linspace(0, 1, n)
    return np.interp(q, pos, v)


def fit_pit_map(pit, last, pop, levels, edges, min_pairs=200, balance=True):
    """mapped_levels[b][h][k] = weighted alpha_k-quantile of the raw mixture's PIT values F(y) of the
    validation (window, step) pairs in band b (of the window's last input) and step h.
    Pooling: when a cell has fewer than min_pairs pairs, the steps h-k..h+k of the same band are pooled
    (k = 1, 2, ... up to all 12 steps); if the band still has too few, it is merged with its neighbour
    towards 70-180 (band 0 with 1, band 3 with 2, band 2 with 1) and the steps widened again.
    balance: each population gets equal total weight in a cell (pairs weighted 1/count of their
    population in the cell), so that the 5,600 Hall windows of band 1 do not drown the T1D people.
    tau strictly increasing (>= 1e-6 apart), in [1e-6, 1 - 1e-6], rounded to 7 decimals.
    -> (mapped [4, 12, L], pooling notes)"""
    b = np.searchsorted(np.asarray(edges, dtype=np.float64), last, side="right")
    levels = np.asarray(levels, dtype=np.float64)
    nb, H = len(edges) + 1, pit.shape[1]
    merge = {0: 1, 1: 1, 2: 1, 3: 2}
    mapped = np.zeros((nb, H, len(levels)))
    notes = []
    for band in range(nb):
        for h in range(H):
            for bset in ([band], sorted({band, merge[band]})):
                sel = np.isin(b, bset)
                done = False
                for k in range(H):
                    steps = list(range(max(0, h - k), min(H, h + k + 1)))
                    if sel.sum() * len(steps) >= min_pairs or (k == H - 1 and len(bset) == 2):
                        done = True
                        break
                if done:
                    break
            vals = pit[sel][:, steps].reshape(-1)
            pops = np.repeat(pop[sel], len(steps))
            w = np.ones(len(vals))
            if balance:
                for p in np.unique(pops):
                    w[pops == p] = 1.0 / (pops == p).sum()
            t = weighted_quantile(vals, w, levels)
            t = np.clip(t, 1e-6, 1 - 1e-6)
            for i in range(1, len(t)):
                t[i] = max(t[i], t[i - 1] + 1e-6)
            for i in range(len(t) - 1, -1, -1):
                t[i] = min(t[i], 1 - 1e-6 - (len(t) - 1 - i) * 1e-6)
                if i < len(t) - 1:
                    t[i] = min(t[i], t[i + 1] - 1e-6)
            mapped[band, h] = np.round(t, 7)
            if bset != [band] or len(steps) > 1:
                notes.append({"band": band, "step": h, "bands_used": bset, "steps_used": [steps[0], steps[-1]],
                              "pairs": int(len(vals))})
    assert np.all(np.diff(mapped, axis=2) > 0) and mapped.min() >= 1e-6 and mapped.max() <= 1 - 1e-6
    return mapped, notes


def calibration_levels():
    return [0.005] + [round(0.01 * i, 2) for i in range(1, 100)] + [0.995]
