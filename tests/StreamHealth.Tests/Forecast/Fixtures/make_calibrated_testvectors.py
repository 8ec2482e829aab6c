"""Writes calibrated-testvectors.json: what forecast-spec.md's calibration gives on calibrated-metadata.json, computed by an
independent implementation (np.interp of mapped_levels over levels, bisection on the Gaussian mixture's CDF with
math.erfc, clamp to bounds_mg_dl), in the layout the 2.0.0 test vectors' `calibrated` blocks use. The first windows
reuse the committed model's test vectors and their mixture_example samples; three more carry their own samples (a
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
out = []
for i, (name, g, mus, sds) in enumerate(windows):
    if mus is None:
        mus, sds = mix["samples_mean_mg_dl"][i], mix["samples_std_mg_dl"][i]
    b = band(g[-1])
    q = [[min(max(mixture_quantile([m[h] for m in mus], [s[h] for s in sds], float(np.interp(a, grid, mapped[b][h]))), lo), hi)
          for h in range(12)] for a in LEVELS]
    entry = {"name": name, "glucose_mg_dl": g,
             "calibrated": {"band": b, "levels": LEVELS, "quantiles_mg_dl": [[round(v, 5) for v in row] for row in q]}}
    if i >= len(tv["windows"]):
        entry["calibrated"]["samples_mean_mg_dl"] = mus
        entry["calibrated"]["samples_std_mg_dl"] = sds
    out.append(entry)
doc = {"model_version": meta["model_version"], "how": __doc__.split("\n")[0], "windows": out,
       "mixture_example": {"samples_mean_mg_dl": mix["samples_mean_mg_dl"], "samples_std_mg_dl": mix["samples_std_mg_dl"]}}
json.dump(doc, open("calibrated-testvectors.json", "w"))
