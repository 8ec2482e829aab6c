"""GlucoBench-style metrics and the Monte Carlo mixture.

Per window: MSE and MAE over the 12 steps; reported: sqrt(median window MSE), median window MAE,
RMSE at 30 min (step 6) and 60 min (step 12) over all windows, and the mean calibration error over
quantile levels 0.05, 0.10, ..., 0.95: |empirical coverage(y <= q_level) - level|, averaged.

For a mixture predictive distribution F, y <= q_level  <=>  F(y) <= level, so coverage is computed
exactly from the PIT values F(y) (no quantile root-finding error); mixture_quantiles() gives the
quantiles themselves (bisection on the mixture CDF, as the service computes them) and is used to
cross-check the identity.
"""
import numpy as np
import torch

LEVELS = np.round(np.arange(0.05, 0.951, 0.05), 2)


def point_metrics(pred, y):
    err = pred - y
    mse_w = (err ** 2).mean(axis=1)
    mae_w = np.abs(err).mean(axis=1)
    return {
        "rmse_median": float(np.sqrt(np.median(mse_w))),
        "mae_median": float(np.median(mae_w)),
        "rmse_30": float(np.sqrt(np.mean(err[:, 5] ** 2))),
        "rmse_60": float(np.sqrt(np.mean(err[:, 11] ** 2))),
        "rmse_mean": float(np.sqrt(np.mean(mse_w))),
    }


def calibration_from_pit(pit):
    pit = np.asarray(pit).reshape(-1)
    cov = np.array([(pit <= a).mean() for a in LEVELS])
    return float(np.mean(np.abs(cov - LEVELS))), cov


def gaussian_pit(mu, sd, y):
    """mu, sd, y: [n, 12] (sd may broadcast)."""
    return torch.special.ndtr(torch.as_tensor((y - mu) / sd, dtype=torch.float64)).numpy()


def mixture_pit(mus, sds, y):
    """mus, sds: [n, N, 12] per-sample Gaussians; y: [n, 12] -> PIT [n, 12]."""
    mus, sds = torch.as_tensor(mus, dtype=torch.float64), torch.as_tensor(sds, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.float64).unsqueeze(1)
    return torch.special.ndtr((y - mus) / sds).mean(dim=1).numpy()


def mixture_quantiles(mus, sds, levels=LEVELS, iters=50):
    """Quantiles of the equal-weight Gaussian mixture by bisection on its CDF.
    mus, sds: [n, N, H] -> [n, H, len(levels)]. Bracket: [min(mu - 8 sd), max(mu + 8 sd)]."""
    mus, sds = torch.as_tensor(mus, dtype=torch.float64), torch.as_tensor(sds, dtype=torch.float64)
    lv = torch.as_tensor(np.asarray(levels), dtype=torch.float64)
    lo = (mus - 8 * sds).min(dim=1).values.unsqueeze(-1).expand(-1, -1, len(lv)).clone()
    hi = (mus + 8 * sds).max(dim=1).values.unsqueeze(-1).expand(-1, -1, len(lv)).clone()
    m_ = mus.unsqueeze(-1)
    s_ = sds.unsqueeze(-1)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        cdf = torch.special.ndtr((mid.unsqueeze(1) - m_) / s_).mean(dim=1)
        below = cdf < lv
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    return (0.5 * (lo + hi)).numpy()


@torch.no_grad()
def mc_samples(model, X, n_samples, seed, batch=4096):
    """Dropout active; each window repeated n_samples times in the batch (as the service does).
    -> mus, sds [n, N, 12] float64."""
    model.train()
    g = torch.manual_seed(seed)
    mus, sds = [], []
    X = torch.as_tensor(X)
    for i in range(0, len(X), batch):
        xb = X[i:i + batch]
        xr = xb.repeat_interleave(n_samples, dim=0)
        m, s = model(xr)
        mus.append(m.reshape(len(xb), n_samples, -1).double())
        sds.append(s.reshape(len(xb), n_samples, -1).double())
    model.eval()
    return torch.cat(mus).numpy(), torch.cat(sds).numpy()


@torch.no_grad()
def deterministic(model, X, batch=8192):
    model.eval()
    X = torch.as_tensor(X)
    ms, ss = [], []
    for i in range(0, len(X), batch):
        m, s = model(X[i:i + batch])
        ms.append(m)
        ss.append(s)
    return torch.cat(ms).numpy(), torch.cat(ss).numpy()


def mc_metrics(mus, sds, y, temperature=1.0):
    pred = mus.mean(axis=1)
    r = point_metrics(pred, y)
    ce, cov = calibration_from_pit(mixture_pit(mus, sds * temperature, y))
    r["calibration_error"] = ce
    r["coverage"] = [round(float(c), 4) for c in cov]
    # central 90 % interval width as a sharpness figure
    return r


def gaussian_metrics(pred, sd, y):
    r = point_metrics(pred, y)
    ce, cov = calibration_from_pit(gaussian_pit(pred, sd, y))
    r["calibration_error"] = ce
    r["coverage"] = [round(float(c), 4) for c in cov]
    return r


# ---------------------------------------------------------------- issue 14: calibrated, bounded forecasts
# The definitions below are the shared contract (README.md, "Glucose forecasting: evaluating the model on your population") that the C# service and its
# `streamhealth forecast evaluate` command implement too.
BAND_EDGES = (70.0, 180.0, 250.0)
BOUNDS = (39.0, 401.0)


def bands_of(last, edges=BAND_EDGES):
    """band 0: last < 70, 1: 70 <= last < 180, 2: 180 <= last < 250, 3: last >= 250 (lower-inclusive)."""
    return np.searchsorted(np.asarray(edges, dtype=np.float64), np.asarray(last, dtype=np.float64), side="right")


def map_levels(cal, bands, alphas):
    """tau[n, 12, K]: linear interpolation of mapped_levels[band][h] over cal['levels'] at each alpha
    (alpha outside [levels[0], levels[-1]] clamped to the end values, as np.interp does). cal None = identity."""
    alphas = np.asarray(alphas, dtype=np.float64)
    n = len(bands)
    if cal is None:
        return np.broadcast_to(alphas, (n, 12, len(alphas))).copy()
    lv = np.asarray(cal["levels"], dtype=np.float64)
    ml = np.asarray(cal["mapped_levels"], dtype=np.float64)  # [4, 12, L]
    table = np.array([[np.interp(alphas, lv, ml[b, h]) for h in range(12)] for b in range(ml.shape[0])])
    return table[np.asarray(bands)]


def mixture_quantiles_at(mus, sds, tau, iters=60):
    """Quantiles of the equal-weight Gaussian mixture at per-(window, step) levels tau [n, H, K]
    (bisection on its CDF, bracket [min(mu - 8 sd), max(mu + 8 sd)]). mus, sds [n, N, H] -> [n, H, K]."""
    mus, sds = torch.as_tensor(mus, dtype=torch.float64), torch.as_tensor(sds, dtype=torch.float64)
    lv = torch.as_tensor(np.asarray(tau), dtype=torch.float64)
    K = lv.shape[-1]
    lo = (mus - 8 * sds).min(dim=1).values.unsqueeze(-1).expand(-1, -1, K).clone()
    hi = (mus + 8 * sds).max(dim=1).values.unsqueeze(-1).expand(-1, -1, K).clone()
    m_, s_ = mus.unsqueeze(-1), sds.unsqueeze(-1)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        cdf = torch.special.ndtr((mid.unsqueeze(1) - m_) / s_).mean(dim=1)
        below = cdf < lv
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    return (0.5 * (lo + hi)).numpy()


def calibrated_quantiles(mus, sds, last, cal, alphas, bounds=BOUNDS, chunk=1000):
    """q'_alpha = clamp(Q_F(tau(alpha, band, h)), min, max) -> [n, 12, K]."""
    tau = map_levels(cal, bands_of(last), alphas)
    out = np.empty(tau.shape)
    for i in range(0, len(tau), chunk):
        out[i:i + chunk] = mixture_quantiles_at(mus[i:i + chunk], sds[i:i + chunk], tau[i:i + chunk])
    return np.clip(out, bounds[0], bounds[1])


def gaussian_quantiles(point, sd, alphas, bounds=BOUNDS):
    z = torch.special.ndtri(torch.as_tensor(np.asarray(alphas), dtype=torch.float64)).numpy()
    return np.clip(point[:, :, None] + np.asarray(sd)[None, :, None] * z[None, None, :], bounds[0], bounds[1])


def spec_metrics(point, q, X, Y):
    """All figures of the contract. point [n, 12]; q [n, 12, 19] at LEVELS (0.05 .. 0.95)."""
    point, Y = np.asarray(point, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    err = point - Y
    mse_w, mae_w = (err ** 2).mean(axis=1), np.abs(err).mean(axis=1)
    k = {round(float(a), 2): i for i, a in enumerate(LEVELS)}
    cov = np.array([(Y <= q[:, :, i]).mean() for i in range(len(LEVELS))])
    b = bands_of(X[:, -1])
    r = {
        "windows": int(len(Y)),
        "rmse_median": float(np.sqrt(np.median(mse_w))),
        "mae_median": float(np.median(mae_w)),
        "rmse_30": float(np.sqrt(np.mean(err[:, 5] ** 2))),
        "rmse_60": float(np.sqrt(np.mean(err[:, 11] ** 2))),
        "calibration_error": float(np.mean(np.abs(cov - LEVELS))),
        "coverage_50": float(((q[:, :, k[0.25]] <= Y) & (Y <= q[:, :, k[0.75]])).mean()),
        "coverage_90": float(((q[:, :, k[0.05]] <= Y) & (Y <= q[:, :, k[0.95]])).mean()),
        "mean_signed_error_60": float(err[:, 11].mean()),
        "mean_signed_error_60_per_band": [float(err[b == j, 11].mean()) if (b == j).any() else None
                                          for j in range(4)],
        "windows_per_band": [int((b == j).sum()) for j in range(4)],
        "coverage": [round(float(c), 4) for c in cov],
    }
    return r


def model_spec_metrics(mus, sds, X, Y, cal, bounds=BOUNDS):
    """Model: calibrated quantiles at the 19 levels; point forecast = q'_0.5."""
    q = calibrated_quantiles(mus, sds, X[:, -1], cal, LEVELS, bounds)
    point = q[:, :, int(np.argmin(np.abs(LEVELS - 0.5)))]
    return spec_metrics(point, q, X, Y)


def baseline_spec_metrics(point, sd, X, Y, bounds=BOUNDS):
    return spec_metrics(point, gaussian_quantiles(point, sd, LEVELS, bounds), X, Y)
