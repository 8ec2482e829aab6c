"""Writes calibrated-testvectors.json: what the model metadata's calibration (Training/README.md, "Recipe and calibration") gives on calibrated-metadata.json, computed by an
independent implementation (np.interp of mapped_levels over levels, bisection on the Gaussian mixture's CDF with
math.erfc, clamp to bounds_mg_dl), in the layout of the model's test vectors (`calibrated.per_window[i]` for `windows[i]`, samples in `mixture_example`).
The first windows reuse the committed model's test vectors and their mixture_example samples; three more have samples of
their own (a
window at the low clamp, one at the high clamp, one on the 180 mg/dL band edge). Run from this folder:
python3 make_calibrated_testvectors.py (numpy)."""
import json
import math

import numpy as np

meta = json.load(open("calibrated-metadata.json"))
cal = meta["calibration"]
lo, hi = meta["bounds_mg_dl"]["min"], meta["bounds_mg_dl"]["max"]
edges = cal["band_edges_mg_dl"]
grid = np.array(cal["levels"])
mapped = np.array(cal["mapped_levels"])
tv = json.load(open("../../../../processors/Forecast/Model/glucose-forecaster.testvectors.json"))
mix = tv["mixture_example"]
LEVELS = [round(i * 0.05, 2) for i in range(1, 20)]


def phi(z):
    return 0.5 * math.erfc(-z / math.sqrt(2))


def mixture_quantile(mus, sds, tau):
    a = min(m - 8.5 * s for m, s in zip(mus, sds))
    b = max(m + 8.5 * s for m, s in zip(mus, sds))
    for _ in range(200):
        c = 0.5 * (a + b)
        if sum(phi((c - m) / s) for m, s in zip(mus, sds)) / len(mus) < tau:
            a = c
        else:
            b = c
    return 0.5 * (a + b)


def band(last):
    for i, e in enumerate(edges):
        if last < e:
            return i
    return len(edges)


rng = np.random.RandomState(3)


def own(level, spread):
    mus = (level + rng.randn(10, 1) * 2 + np.arange(12)[None, :] * 0).round(4).tolist()
    sds = (spread + rng.rand(10, 12)).round(4).tolist()
    return mus, sds


windows = [(w["name"], w["glucose_mg_dl"], None, None) for w in tv["windows"]]
windows.append(("low clamp", [60.0] * 90 + [55, 50, 46, 43, 41, 40], *own(36, 4)))
windows.append(("high clamp", [380.0] * 90 + [390, 395, 398, 400, 401, 401], *own(410, 6)))
windows.append(("edge 180", [170.0] * 95 + [180.0], *own(182, 10)))
names, inputs, means, sds_all, per_window = [], [], [], [], []
for i, (name, g, mus, sds) in enumerate(windows):
    if mus is None:
        mus, sds = mix["samples_mean_mg_dl"][i], mix["samples_std_mg_dl"][i]
    b = band(g[-1])
    # [step][level], as the training script writes its `calibrated.per_window` entries
    q = [[min(max(mixture_quantile([m[h] for m in mus], [s[h] for s in sds], float(np.interp(a, grid, mapped[b][h]))), lo), hi)
          for a in LEVELS] for h in range(12)]
    names.append(name)
    inputs.append(g)
    means.append(mus)
    sds_all.append(sds)
    per_window.append({"band": b, "levels": LEVELS, "quantiles_mg_dl": [[round(v, 5) for v in row] for row in q],
                       "point_forecast_mg_dl": [round(row[LEVELS.index(0.5)], 5) for row in q]})
doc = {"model_version": meta["model_version"], "how": __doc__.split("\n")[0],
       "windows": [{"name": n, "glucose_mg_dl": g} for n, g in zip(names, inputs)],
       "mixture_example": {"samples_mean_mg_dl": means, "samples_std_mg_dl": sds_all},
       "calibrated": {"bounds_mg_dl": {"min": lo, "max": hi}, "tolerance_mg_dl": 1e-3, "per_window": per_window}}
json.dump(doc, open("calibrated-testvectors.json", "w"))
