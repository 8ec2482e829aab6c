"""Glucose forecaster: train, evaluate (model + LVCF + linear regression), blend the network mean with
the linear regression (weight and std temperature chosen on the validation people), compare architectures,
export ONNX (MC dropout kept), metadata and test vectors. Run through train.sh:

    bash processors/Forecast/Training/train.sh

Forecast: 12 x 5 min (1 h) ahead from the last 96 x 5 min (8 h). See README.md for the design.
"""
import argparse
import datetime as dt
import json
import os
import platform
import random
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import data  # noqa: E402
import evaluate as ev  # noqa: E402
import export  # noqa: E402
import fit  # noqa: E402
import models  # noqa: E402
import ort_check  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
MODEL_VERSION = "glucose-forecaster-mlp-lr-blend-2.0.0"
DATE = "2026-12-03"
MC_SAMPLES = 10
MAC_BUDGET = 50_000
SEEDS = {"split": 20261123, "torch_init_and_batches": 1, "mc_eval": {"hall": {"val": 101, "test": 102},
         "d1namo": {"val": 111, "test": 112}}, "onnx_dropout_seed_base": 7001}
POPS = ("hall", "d1namo")        # the evaluated populations (validation + test people each)
MIN_CAL_PAIRS = 200               # calibration cells with fewer validation pairs are pooled (fit.fit_pit_map)
# training windows drawn per epoch with these population weights (None: every window once per epoch)
POP_SAMPLING = None
FIT_TEMPERATURE = False           # scalar std temperature before the level map
CAL_BALANCE = True                # populations weighted equally within a calibration cell
USE_MEDTRONIC = True              # the Medtronic person as a training person
USE_LEVEL = True                  # the network's level input (last - level_mean) / level_sd
# development overrides (the committed model uses the defaults above): FC_POP_SAMPLING="hall:1,d1namo:1,medtronic:1",
# FC_TEMPERATURE=0|1, FC_CAL_BALANCE=0|1, FC_MEDTRONIC=0|1
if os.environ.get("FC_POP_SAMPLING"):
    POP_SAMPLING = {k: float(v) for k, v in (kv.split(":") for kv in os.environ["FC_POP_SAMPLING"].split(","))}
FIT_TEMPERATURE = os.environ.get("FC_TEMPERATURE", str(int(FIT_TEMPERATURE))) == "1"
CAL_BALANCE = os.environ.get("FC_CAL_BALANCE", str(int(CAL_BALANCE))) == "1"
USE_MEDTRONIC = os.environ.get("FC_MEDTRONIC", str(int(USE_MEDTRONIC))) == "1"
USE_LEVEL = os.environ.get("FC_LEVEL", str(int(USE_LEVEL))) == "1"

# the candidates compared; identical training recipe
CANDIDATES = {
    "mlp": dict(arch="mlp", hidden=128, layers=2, dropout=0.1, skip=False),
    "patch_transformer": dict(arch="patch_transformer", patch=12, d=16, layers=1, heads=4, ff=32, dropout=0.1,
                              skip=False),
}
RECIPE = dict(epochs=20, mse_epochs=10, lr=2e-3, wd=1e-4, batch=256, select="nll")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def make_model(cfg, scaling):
    c = dict(cfg)
    arch = c.pop("arch")
    body = models.MLPBody(**c) if arch == "mlp" else models.PatchTransformerBody(**c)
    return models.Forecaster(body, scaling["delta_scale_mg_dl"], scaling["level_mean_mg_dl"],
                             scaling["level_sd_mg_dl"], use_level=USE_LEVEL)


def rounded(r, nd=3):
    return {k: (round(v, nd) if isinstance(v, float) else v) for k, v in r.items()}


def pop_mean(d):
    return float(np.mean([d[p] for p in POPS]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=os.environ.get("STREAMHEALTH_DATA",
                                                         os.path.join(REPO, "..", "shared", "data")))
    ap.add_argument("--out-dir", default=os.path.join(REPO, "processors", "Forecast", "Model"))
    ap.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    ap.add_argument("--compare", action="store_true", help="also train the patch transformer (development)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    t_start = time.time()
    torch.set_num_threads(args.threads)
    random.seed(SEEDS["torch_init_and_batches"])
    np.random.seed(SEEDS["torch_init_and_batches"])
    recipe = dict(RECIPE, epochs=args.epochs)

    # ------------------------------------------------------------------ data
    sets, info = data.build(args.data_dir, seed=SEEDS["split"])
    log(f"windows: {info['windows']}")
    tr_parts = [("hall", sets["hall"]["train"]), ("d1namo", sets["d1namo"]["train"]),
                ("medtronic", sets["medtronic"]["train"])][:3 if USE_MEDTRONIC else 2]
    Xtr = np.concatenate([p[1][0] for p in tr_parts])
    Ytr = np.concatenate([p[1][1] for p in tr_parts])
    pop_tr = np.concatenate([np.full(len(p[1][0]), p[0]) for p in tr_parts])
    sample_p = None
    if POP_SAMPLING:
        w = np.array([POP_SAMPLING[p] / (pop_tr == p).sum() for p in pop_tr])
        sample_p = w / w.sum()
    V = {p: sets[p]["val"] for p in POPS}
    T = {p: sets[p]["test"] for p in POPS}
    delta = Ytr - Xtr[:, -1:]
    scaling = {
        "delta_scale_mg_dl": float(np.round(np.sqrt(np.mean(delta ** 2)))),
        "level_mean_mg_dl": float(np.round(Xtr[:, -1].mean())),
        "level_sd_mg_dl": float(np.round(Xtr[:, -1].std())),
    }
    log(f"scaling (from training people): {scaling}")

    # ------------------------------------------------------------------ baselines (training people)
    results = {"model": {}, "model_uncalibrated": {}, "lvcf": {}, "linear_regression": {}}
    sd_lvcf = delta.std(axis=0)
    lr = fit.LinearBaseline().fit(Xtr, Ytr)
    for p in POPS:
        for split, (X, Y) in [("val", V[p]), ("test", T[p])]:
            results["lvcf"].setdefault(p, {})[split] = rounded(ev.baseline_spec_metrics(fit.lvcf(X), sd_lvcf, X, Y), 4)
            results["linear_regression"].setdefault(p, {})[split] = rounded(
                ev.baseline_spec_metrics(lr.predict(X), lr.sd, X, Y), 4)

    # ------------------------------------------------------------------ network
    name = "mlp"
    cfg = CANDIDATES[name]
    torch.manual_seed(SEEDS["torch_init_and_batches"])
    net = make_model(cfg, scaling)
    log(f"training {name} ({net.macs()} MACs/sample) on {len(Xtr)} windows ...")
    net, hist, secs = fit.train_model(net, Xtr, Ytr, [V[p] for p in POPS], None,
                                      seed=SEEDS["torch_init_and_batches"], log=log, sample_p=sample_p,
                                      **{k: v for k, v in recipe.items()})
    mcs = lambda m, p, split, X: ev.mc_samples(m, X, MC_SAMPLES, SEEDS["mc_eval"][p][split])  # noqa: E731
    # (1) blend weight: grid 0..1, lowest mean over the validation populations of sqrt-median-MSE of the
    # blended MC mean (ties toward larger w)
    grid = np.round(np.arange(0.0, 1.0001, 0.05), 2)
    net_val = {p: mcs(net, p, "val", V[p][0]) for p in POPS}
    w_scores = {}
    for w in grid:
        w_scores[f"{w:.2f}"] = round(pop_mean({p: ev.point_metrics(
            w * net_val[p][0].mean(axis=1) + (1 - w) * lr.predict(V[p][0]), V[p][1])["rmse_median"] for p in POPS}), 4)
    w = float(min(w_scores, key=lambda k: (w_scores[k], -float(k))))
    model = models.LinearBlend(net, lr.W[:-1], lr.W[-1], w)
    # (2) std temperature of the raw mixture: lowest mean over validation populations of the calibration error
    val_mc = {p: mcs(model, p, "val", V[p][0]) for p in POPS}
    best = None
    for t in (np.round(np.arange(0.50, 2.001, 0.02), 2) if FIT_TEMPERATURE else [1.0]):
        ce = pop_mean({p: ev.calibration_from_pit(ev.mixture_pit(val_mc[p][0], val_mc[p][1] * t, V[p][1]))[0]
                       for p in POPS})
        if best is None or (round(ce, 4), abs(t - 1)) < best[0]:
            best = ((round(ce, 4), abs(t - 1)), float(t), ce)
    temp = best[1]
    model.std_temperature.fill_(temp)
    log(f"  config: sampling {POP_SAMPLING} temperature {FIT_TEMPERATURE} cal_balance {CAL_BALANCE} "
        f"medtronic {USE_MEDTRONIC} level {USE_LEVEL}")
    log(f"  blend w={w} (val {w_scores[f'{w:.2f}']}), std temperature {temp} (val raw cal. error {best[2]:.4f})")
    # (3) PIT level map per band x step on the validation people (raw mixture of the final graph)
    val_mc = {p: mcs(model, p, "val", V[p][0]) for p in POPS}
    pit = np.concatenate([ev.mixture_pit(*val_mc[p], V[p][1]) for p in POPS])
    last = np.concatenate([V[p][0][:, -1] for p in POPS]).astype(np.float64)
    popv = np.concatenate([np.full(len(V[p][0]), p) for p in POPS])
    levels = fit.calibration_levels()
    mapped, pool_notes = fit.fit_pit_map(pit, last, popv, levels, ev.BAND_EDGES, MIN_CAL_PAIRS,
                                        balance=CAL_BALANCE)
    cal = {
        "method": ("PIT level map: for each band of the last reading x horizon step, tau = weighted empirical "
                   "alpha-quantile of the raw 10-sample MC mixture's PIT values F(y) on the validation people "
                   "(each population weighted equally within a cell); cells with < %d pairs pool neighbouring "
                   "steps, then the neighbouring band towards 70-180; tau made strictly increasing within "
                   "[1e-6, 1-1e-6]" % MIN_CAL_PAIRS),
        "fitted_on": info["people"]["hall"]["validation"] + info["people"]["d1namo"]["validation"],
        "band_edges_mg_dl": [int(e) for e in ev.BAND_EDGES],
        "levels": levels,
        "mapped_levels": mapped.tolist(),
    }
    # ------------------------------------------------------------------ evaluation (spec definitions)
    for p in POPS:
        for split, (X, Y) in [("val", V[p]), ("test", T[p])]:
            mus, sds = val_mc[p] if split == "val" else mcs(model, p, split, X)
            results["model"].setdefault(p, {})[split] = rounded(ev.model_spec_metrics(mus, sds, X, Y, cal), 4)
            results["model_uncalibrated"].setdefault(p, {})[split] = rounded(
                ev.model_spec_metrics(mus, sds, X, Y, None), 4)
            r = results["model"][p][split]
            log(f"  {p} {split}: model {r['rmse_median']:.2f} cal {r['calibration_error']:.3f} "
                f"cov90 {r['coverage_90']:.3f} mse60 {r['mean_signed_error_60']:+.2f} "
                f"{[None if v is None else round(v, 1) for v in r['mean_signed_error_60_per_band']]} | "
                f"lvcf {results['lvcf'][p][split]['rmse_median']:.2f} "
                f"lr {results['linear_regression'][p][split]['rmse_median']:.2f}")
    lat = fit.torch_latency_us(model)
    costs = {"macs_per_sample": int(model.macs()), "macs_per_sample_network": int(net.macs()),
             "parameters": int(sum(p_.numel() for p_ in model.parameters())),
             "torch_cpu_us_per_sample_batch1024": round(lat["wall_us"], 2),
             "torch_cpu_thread_time_us_per_sample_batch1024": round(lat["cpu_us"], 2),
             "train_seconds": round(secs, 1),
             "best_epoch": int(min(((h[4], h[0]) for h in hist if h[0] >= recipe["mse_epochs"]))[1])}

    # ------------------------------------------------------------------ export + checks
    os.makedirs(args.out_dir, exist_ok=True)
    onnx_path = os.path.join(args.out_dir, "glucose-forecaster.onnx")
    exp = export.export_onnx(model, onnx_path, SEEDS["onnx_dropout_seed_base"])
    exp["bytes"] = os.path.getsize(onnx_path)
    Xte_all = np.concatenate([T[p][0] for p in POPS])
    xs = Xte_all[:8]
    a, _ = ev.mc_samples(model, xs, 1, 1)
    b, _ = ev.mc_samples(model, xs, 1, 2)
    torch_check = {"mc_two_runs_differ": bool(not np.array_equal(a, b))}
    ort = ort_check.check(onnx_path, lambda x: ev.deterministic(model, x),
                          lambda x, n: ev.mc_samples(model, x, n, 5), Xte_all[::max(1, len(Xte_all) // 256)][:256])
    log(f"ORT check: {json.dumps(ort)}")
    if ort.get("available"):
        costs["ort"] = ort["throughput"]
    costs["onnx_bytes"] = exp["bytes"]

    # ------------------------------------------------------------------ test vectors
    tv = test_vectors(model, T, onnx_path, ort.get("available"), cal)
    with open(os.path.join(args.out_dir, "glucose-forecaster.testvectors.json"), "w") as f:
        json.dump(tv, f, indent=1)

    # ------------------------------------------------------------------ metadata
    meta = {
        "model_version": MODEL_VERSION,
        "date": DATE,
        "file": "glucose-forecaster.onnx",
        "architecture": f"{name} + linear-regression blend, MC dropout, post-hoc PIT level map per band x step",
        "architecture_config": cfg,
        "training_populations": {
            "hall2018": "19 people mostly without diabetes (Hall et al. 2018, CC BY 4.0): train/validation/test",
            "d1namo": "9 people with type 1 diabetes (Dubosson et al. 2018, CC BY-SA 4.0, GlucoBench processing): "
                      "train/validation/test",
            "medtronic": "1 person with type 1 diabetes, 3 months (CareLink export): training only"},
        "calibration": cal,
        "bounds_mg_dl": {"min": int(ev.BOUNDS[0]), "max": int(ev.BOUNDS[1])},
        "baselines": {
            "linear_regression": {"weights": lr.W[:-1].tolist(), "bias": lr.W[-1].tolist(),
                                  "residual_sd_mg_dl": lr.sd.tolist()},
            "last_value": {"residual_sd_mg_dl": sd_lvcf.astype(np.float64).tolist()}},
        "baselines_fitted_on": ("training people (Hall train, D1NAMO train, Medtronic): least squares from the 96 raw "
                         "inputs + intercept to the 12 targets (float64); residual sd = per-step standard "
                         "deviation of (forecast - target) on the training windows"),
        "blend": {
            "formula": "mean = w * network_mean + (1 - w) * (x @ W + b); std = network std (temperature included)",
            "w": w,
            "linear_regression": "the same W, b as baselines.linear_regression; the Gemm 'lr' in the graph "
                                 "(stored float32)",
            "w_fit": "grid 0.00..1.00 step 0.05, lowest mean over the validation populations (Hall, D1NAMO) of "
                     "the sqrt-median-MSE of the blended MC mean (ties toward larger w)",
            "validation_grid": w_scores,
        },
        "inputs": [{"name": "glucose_mg_dl", "type": "float32", "shape": ["batch", data.IN_STEPS],
                    "description": "the last 96 sensor glucose values in mg/dL, 5 minutes apart, oldest first; "
                                   "raw values, the graph does all scaling"}],
        "outputs": [{"name": "mean_mg_dl", "type": "float32", "shape": ["batch", data.HORIZON],
                     "description": "mean of one MC-dropout sample's Gaussian for t+5 ... t+60 min"},
                    {"name": "std_mg_dl", "type": "float32", "shape": ["batch", data.HORIZON],
                     "description": "std of that Gaussian (already multiplied by std_temperature)"}],
        "step_minutes": 5, "input_steps": data.IN_STEPS, "horizon_steps": data.HORIZON,
        "scaling": dict(scaling, formula="last=x[:,95]; z=(x-last)/delta_scale; level=(last-level_mean)/level_sd; "
                                         "net_mean=last+delta_scale*out[:, :12]; "
                                         "mean=w*net_mean+(1-w)*(x@W+b) (see blend); "
                                         "std=delta_scale*std_temperature*(softplus(out[:, 12:])+1e-3)",
                        std_temperature=temp,
                        std_temperature_fit=("scalar on every sample's std, grid 0.50..2.00 step 0.02, minimising "
                                             "the mean over validation populations of the raw mixture's calibration "
                                             "error (before the level map)") if FIT_TEMPERATURE else
                        "not fitted (1.0): the calibration level map does the calibration"),
        "monte_carlo_dropout": {
            "dropout_rate": cfg["dropout"],
            "recommended_samples": MC_SAMPLES,
            "how": "repeat each input row N times in one batch; each row gets its own dropout mask",
            "dropout_nodes": exp["dropout_nodes"],
            "consumer_requirement": "ONNX Runtime removes Dropout (EliminateDropout) unless the session config "
                                    "'optimization.disable_specified_optimizers' = 'EliminateDropout'; a session "
                                    "with default optimisations gives the deterministic (dropout-off) outputs",
            "predictive_distribution": "equal-weight mixture F of the N Gaussians N(mean_i, std_i^2); calibrated "
                                       "quantile q'_a = clamp(Q_F(tau), min, max), tau = interpolation of "
                                       "calibration.mapped_levels[band][h] over calibration.levels at a; point "
                                       "forecast = q'_0.5; Q_F by bisection on [min(mean_i-8 std_i), "
                                       "max(mean_i+8 std_i)]",
        },
        "onnx": {"opset": exp["opset"], "bytes": exp["bytes"], "parameters": exp["parameters"], "ops": exp["ops"],
                 "exported_with": f"torch {torch.__version__}, onnx {__import__('onnx').__version__}"},
        "training": {
            "data": {"hall2018": "shared/data/cgm/hall2018_19_subjects.csv",
                     "d1namo": "shared/data/cgm/dubosson2018_t1d_9_subjects.csv",
                     "medtronic": "shared/data/cgm/medtronics_test_livia.csv ('Sensor Glucose (mg/dL)'; training only)"},
            "preprocessing": "sorted, duplicate timestamps averaged, split into segments at gaps > 15 min, "
                             "segments linearly resampled to a 5-min grid from their first reading, sliding windows "
                             "(stride 1) of 96 + 12 steps",
            "split": ("by person. Hall: stratified by diagnosis, seeded (4 validation, 4 test, as in 1.x). D1NAMO: "
                      "people with < %d windows to training, the others shuffled with the same seed: 3 test, "
                      "2 validation, rest training. Medtronic: training only." % data.D1NAMO_MIN_EVAL_WINDOWS),
            "people": info["people"], "diagnosis": info["diagnosis"], "windows": info["windows"],
            "d1namo_windows_per_person": info["d1namo_windows_per_person"],
            "population_sampling": POP_SAMPLING or "none: every training window once per epoch",
            "recipe": dict(recipe, optimizer="AdamW, one-cycle cosine LR", loss="MSE on the mean for the first "
                           "mse_epochs, then Gaussian NLL on mean+std; checkpoint = best mean validation NLL over "
                           "the validation populations (dropout off)"),
            "seeds": SEEDS, "torch": torch.__version__, "onnx": __import__("onnx").__version__,
            "numpy": np.__version__, "python": platform.python_version(),
        },
        "evaluation": {
            "protocol": "README 'Glucose forecasting: evaluating the model on your population' definitions (GlucoBench windows); model: 10-sample MC mixture "
                        "(seeded), calibrated quantiles, point = q'_0.5, clamped to bounds; baselines: point + "
                        "residual_sd * Phi^-1(a) clamped (point itself not clamped)",
            "levels": [float(x) for x in ev.LEVELS],
            "results": results, "costs": costs, "calibration_pooling": pool_notes,
        },
        "verification": {"torch": torch_check, "onnx_checker": "passed (full_check)", "onnxruntime": ort},
        "reproduce": "bash processors/Forecast/Training/train.sh",
        "wall_seconds": round(time.time() - t_start, 1),
    }
    meta["metrics_table_markdown"] = table(meta)
    with open(os.path.join(args.out_dir, "glucose-forecaster.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(table(meta))


def table(meta):
    R = meta["evaluation"]["results"]
    ppl = meta["training"]["people"]
    lines = []
    hdr = ["| forecaster | windows | sqrt median MSE | median MAE | RMSE@30 | RMSE@60 | mean cal. error | cov. 50 % | "
           "cov. 90 % | MSE@60 | MSE@60 <70 | 70-180 | 180-250 | >=250 |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def f(v):
        return "—" if v is None else f"{v:+.2f}"
    for split, what in [("test", "test"), ("val", "validation (w, temperature, checkpoint and calibration fitted "
                                                  "on these: not held out)")]:
        for p in POPS:
            lines += ["", f"{p} {what} people: " + ", ".join(ppl[p]["test" if split == "test" else "validation"]), ""]
            lines += hdr
            for key, label in [("model", "model 2.0.0 (calibrated, N=10)"), ("model_uncalibrated", "model, raw mixture"),
                               ("lvcf", "last value"), ("linear_regression", "linear regression")]:
                r = R[key][p][split]
                bands = " | ".join(f"{f(v)} ({n})" for v, n in zip(r["mean_signed_error_60_per_band"],
                                                                  r["windows_per_band"]))
                lines.append(f"| {label} | {r['windows']} | {r['rmse_median']:.2f} | {r['mae_median']:.2f} | "
                             f"{r['rmse_30']:.2f} | {r['rmse_60']:.2f} | {r['calibration_error']:.3f} | "
                             f"{r['coverage_50']:.3f} | {r['coverage_90']:.3f} | {f(r['mean_signed_error_60'])} | "
                             f"{bands} |")
    c = meta["evaluation"]["costs"]
    ortc = c.get("ort", {}).get("threads_1", {}).get("cpu_ms_median", "n/a")
    lines += ["", f"cost: {c['macs_per_sample']:,} MACs/sample, ORT CPU {ortc} ms per 2,000 forecasts x 10 samples "
              f"(1 thread); training {c['train_seconds']:.0f} s"]
    return "\n".join(lines)


def extreme_windows():
    t = np.arange(96, dtype=np.float64)
    drop = 190 + 6 * np.sin(t / 9.0)
    drop[-10:] = [200, 196, 186, 171, 150, 115, 87, 62, 48, 40]
    plateau401 = np.full(96, 401.0)
    low = np.full(96, 40.0)
    low[:60] = np.linspace(110, 60, 60)
    low[60:] = np.maximum(40.0, np.linspace(58, 30, 36))
    high = np.linspace(180, 330, 96)
    high[-12:] = np.linspace(335, 398, 12)
    return [("fast_drop_to_40", drop), ("plateau_401", plateau401), ("low_clamp_at_40", low),
            ("high_clamp_rise_to_398", high)]


@torch.no_grad()
def test_vectors(model, T, onnx_path, ort_available, cal):
    """Windows + deterministic (dropout-off) outputs + MC summary statistics + one fixed set of 10
    (mean, std) samples per window with the mixture quantiles and the calibrated, clamped quantiles."""
    rng = np.random.RandomState(11)
    picks = []
    for p in POPS:
        X = T[p][0]
        for i in sorted(rng.choice(len(X), 2, replace=False).tolist()):
            picks.append((f"{p}_test_window_{i}", X[i].astype(np.float64)))
    picks += [("flat_100", np.full(96, 100.0)), ("ramp_80_to_175", np.linspace(80, 175, 96))]
    picks += extreme_windows()
    names = [n for n, _ in picks]
    # inputs rounded to 2 decimals so that the JSON decimal parses to exactly the float32 used here
    X = np.round(np.stack([x for _, x in picks]), 2).astype(np.float32)
    dm, ds = ev.deterministic(model, X)
    mus, sds = ev.mc_samples(model, X, 1000, 77)
    source = "torch MC dropout (seed 77), first 10 of 1000 samples"
    m10, s10 = mus[:, :10], sds[:, :10]
    ort_first = None
    if ort_available:
        o = ort_check.Ort(ort_check.find_library())
        s = o.session(onnx_path, mc_dropout=True)
        om, osd = s.run(np.repeat(X, MC_SAMPLES, axis=0))
        s.close()
        m10, s10 = om.reshape(len(X), MC_SAMPLES, 12).astype(np.float64), osd.reshape(len(X), MC_SAMPLES, 12).astype(np.float64)
        source = (f"ONNX Runtime {o.version}, fresh session with EliminateDropout disabled, intra-op threads 1, "
                  f"first Run on the batch of the {len(X)} windows each repeated 10 times consecutively "
                  "(row 10*w + i = sample i of window w); seeded Dropout nodes make this reproducible")
        ort_first = True
    q_levels = [0.05, 0.25, 0.5, 0.75, 0.95]
    m10, s10 = np.round(m10, 4), np.round(s10, 4)  # quantiles from exactly the values written below
    q = ev.mixture_quantiles(m10, s10, q_levels)
    r2 = lambda a: np.round(np.asarray(a, dtype=np.float64), 4).tolist()  # noqa: E731
    last = X[:, -1].astype(np.float64)
    lv19 = [float(a) for a in ev.LEVELS]
    tau = ev.map_levels(cal, ev.bands_of(last), lv19)
    raw = np.stack([ev.mixture_quantiles_at(m10[i:i + 1], s10[i:i + 1], tau[i:i + 1])[0] for i in range(len(X))])
    qc = np.clip(raw, ev.BOUNDS[0], ev.BOUNDS[1])
    k50 = lv19.index(0.5)
    calibrated = [{"band": int(ev.bands_of(last[i:i + 1])[0]), "levels": lv19,
                   "tau": np.asarray(tau[i]).tolist(),
                   "quantiles_mg_dl": r2(qc[i]), "point_forecast_mg_dl": r2(qc[i][:, k50]),
                   "clamped_values": int((raw[i] != qc[i]).sum())} for i in range(len(X))]
    return {
        "model_version": MODEL_VERSION,
        "windows": [{"name": n, "glucose_mg_dl": np.round(x.astype(np.float64), 2).tolist()} for n, x in zip(names, X)],
        "deterministic": {
            "how": "dropout off: torch eval() = an ORT session with default optimisations (EliminateDropout on)",
            "tolerance_mg_dl": 2e-3,
            "mean_mg_dl": r2(dm), "std_mg_dl": r2(ds)},
        "mc_summary": {
            "how": "1000 MC-dropout samples per window (torch, train mode); C# check: the mean over its own samples "
                   "of mean_mg_dl within 5 standard errors (std_of_mean_mg_dl/sqrt(n)) and the spreads within ~15 %",
            "samples": 1000,
            "mean_of_mean_mg_dl": r2(mus.mean(axis=1)), "std_of_mean_mg_dl": r2(mus.std(axis=1)),
            "mean_of_std_mg_dl": r2(sds.mean(axis=1))},
        "mixture_example": {
            "source": source, "exact_ort_reproduction": bool(ort_first),
            "samples_mean_mg_dl": r2(m10), "samples_std_mg_dl": r2(s10),
            "point_forecast_mg_dl": r2(m10.mean(axis=1)),
            "quantile_levels": q_levels,
            "quantiles_mg_dl": r2(q), "quantile_tolerance_mg_dl": 1e-3},
        "calibrated": {
            "how": ("per window, from the 10 samples in mixture_example (as written, 4 decimals) and the metadata's "
                    "calibration + bounds_mg_dl (39/401): band of the last input; tau[h][k] = interpolation of "
                    "mapped_levels[band][h] over calibration.levels at levels[k]; quantiles_mg_dl[h][k] = "
                    "clamp(mixture quantile at tau, 39, 401) (bisection, 60 iterations); point_forecast_mg_dl = "
                    "the 0.5 column; clamped_values = how many entries the bounds changed"),
            "bounds_mg_dl": {"min": ev.BOUNDS[0], "max": ev.BOUNDS[1]},
            "tolerance_mg_dl": 1e-3,
            "per_window": calibrated},
    }


if __name__ == "__main__":
    main()
