"""CGM loading, 5-minute resampling, segmenting and windowing (numpy only).

Rules (also written into the model metadata):
  * each person's readings are sorted by time, readings at the same timestamp averaged;
  * the series is cut into contiguous segments wherever two consecutive readings are more than
    15 minutes apart (gaps of up to 15 minutes are linearly interpolated);
  * every segment is resampled onto a 5-minute grid that starts at its first reading;
  * sliding windows (stride 1) of 96 input + 12 target steps are cut from segments of >= 108 steps.
"""
import csv
import datetime as dt
import os

import numpy as np

STEP_S = 300
MAX_GAP_S = 900
IN_STEPS = 96
HORIZON = 12


def _epoch(s, fmt):
    return dt.datetime.strptime(s, fmt).replace(tzinfo=dt.timezone.utc).timestamp()


def load_hall(path):
    """-> {person_id: (times_s, mg_dl)}, {person_id: diagnosis}"""
    per, diag = {}, {}
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        for row in r:
            g = row["gl"].strip()
            if g in ("", "NA"):
                continue
            pid = row["id"]
            per.setdefault(pid, []).append((_epoch(row["time"].strip(), "%Y-%m-%d %H:%M:%S"), float(g)))
            diag[pid] = row["diagnosis"]
    out = {}
    for pid, rows in per.items():
        a = np.array(rows, dtype=np.float64)
        out[pid] = (a[:, 0], a[:, 1])
    return out, diag


def load_medtronic(path, column="Sensor Glucose (mg/dL)"):
    """CareLink export: several sections, each with its own 'Index;Date;Time;...' header,
    semicolons, decimal commas, rows in descending time. -> (times_s, mg_dl) ascending."""
    rows = []
    idx = None
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        for line in f:
            line = line.rstrip("\r\n")
            cells = line.split(";")
            if cells and cells[0] == "Index":
                idx = {name: i for i, name in enumerate(cells)}
                continue
            if idx is None or column not in idx or len(cells) <= idx[column]:
                continue
            v = cells[idx[column]].strip().strip('"')
            if not v:
                continue
            try:
                val = float(v.replace(",", "."))
                t = _epoch(cells[idx["Date"]].strip() + " " + cells[idx["Time"]].strip(), "%Y/%m/%d %H:%M:%S")
            except ValueError:
                continue
            rows.append((t, val))
    a = np.array(rows, dtype=np.float64)
    return a[:, 0], a[:, 1]


def segments(times, values):
    """Sorted, de-duplicated, split at gaps > 15 min, resampled to the 5-min grid."""
    order = np.argsort(times, kind="stable")
    t, v = times[order], values[order]
    # average duplicate timestamps
    ut, inv = np.unique(t, return_inverse=True)
    if len(ut) != len(t):
        v = np.bincount(inv, weights=v) / np.bincount(inv)
        t = ut
    segs = []
    breaks = np.where(np.diff(t) > MAX_GAP_S)[0] + 1
    for st, en in zip(np.r_[0, breaks], np.r_[breaks, len(t)]):
        ts, vs = t[st:en], v[st:en]
        if len(ts) < 2:
            continue
        grid = np.arange(ts[0], ts[-1] + 1e-6, STEP_S)
        segs.append(np.interp(grid, ts, vs).astype(np.float32))
    return segs


def windows(segs, stride=1):
    xs, ys = [], []
    L = IN_STEPS + HORIZON
    for s in segs:
        if len(s) < L:
            continue
        idx = np.arange(0, len(s) - L + 1, stride)[:, None] + np.arange(L)[None, :]
        w = s[idx]
        xs.append(w[:, :IN_STEPS])
        ys.append(w[:, IN_STEPS:])
    if not xs:
        return np.zeros((0, IN_STEPS), np.float32), np.zeros((0, HORIZON), np.float32)
    return np.concatenate(xs), np.concatenate(ys)


def split_people(ids, diag, seed, n_val, n_test):
    """Fixed, seeded assignment of people to train/val/test, stratified by diagnosis."""
    rng = np.random.RandomState(seed)
    train, val, test = [], [], []
    groups = sorted(set(diag[i] for i in ids))
    # distribute val/test slots proportionally to group sizes (largest remainder)
    sizes = {g: sum(1 for i in ids if diag[i] == g) for g in groups}
    def alloc(n):
        raw = {g: n * sizes[g] / len(ids) for g in groups}
        base = {g: int(np.floor(raw[g])) for g in groups}
        rest = n - sum(base.values())
        for g in sorted(groups, key=lambda g: -(raw[g] - base[g]))[:rest]:
            base[g] += 1
        return base
    av, at = alloc(n_val), alloc(n_test)
    for g in groups:
        members = sorted(i for i in ids if diag[i] == g)
        rng.shuffle(members)
        test += members[:at[g]]
        val += members[at[g]:at[g] + av[g]]
        train += members[at[g] + av[g]:]
    return sorted(train), sorted(val), sorted(test)


def load_dubosson(path):
    """D1NAMO as processed by GlucoBench (id,time,gl). -> {person_id: (times_s, mg_dl)}"""
    per = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            g = row["gl"].strip()
            if g in ("", "NA"):
                continue
            per.setdefault("d1namo-" + row["id"].strip(), []).append(
                (_epoch(row["time"].strip(), "%Y-%m-%d %H:%M:%S"), float(g)))
    out = {}
    for pid, rows in per.items():
        a = np.array(rows, dtype=np.float64)
        out[pid] = (a[:, 0], a[:, 1])
    return out


# D1NAMO split rule: people with fewer than this many windows cannot be evaluated meaningfully and
# always go to training; the others are shuffled with the split seed: first 3 test, next 2 validation,
# the rest training.
D1NAMO_MIN_EVAL_WINDOWS = 200
D1NAMO_N_TEST, D1NAMO_N_VAL = 3, 2


def split_d1namo(win_counts, seed):
    small = sorted(p for p, n in win_counts.items() if n < D1NAMO_MIN_EVAL_WINDOWS)
    big = sorted(p for p, n in win_counts.items() if n >= D1NAMO_MIN_EVAL_WINDOWS)
    rng = np.random.RandomState(seed)
    rng.shuffle(big)
    te, va = big[:D1NAMO_N_TEST], big[D1NAMO_N_TEST:D1NAMO_N_TEST + D1NAMO_N_VAL]
    tr = big[D1NAMO_N_TEST + D1NAMO_N_VAL:] + small
    return sorted(tr), sorted(va), sorted(te)


def build(data_dir, seed=20261123, n_val=4, n_test=4):
    """Populations: 'hall' (19 people, mostly without diabetes), 'd1namo' (9 people with T1D) and the
    Medtronic CareLink person (T1D, 3 months; training only, never validation or test).
    -> sets[pop][role] = (X, Y) for pop in hall, d1namo (roles train/val/test) and medtronic (train),
       info"""
    hall, diag = load_hall(os.path.join(data_dir, "cgm", "hall2018_19_subjects.csv"))
    tr, va, te = split_people(sorted(hall), diag, seed, n_val, n_test)
    segs = {pid: segments(*hall[pid]) for pid in hall}
    dub = load_dubosson(os.path.join(data_dir, "cgm", "dubosson2018_t1d_9_subjects.csv"))
    dsegs = {pid: segments(*dub[pid]) for pid in dub}
    dwin = {p: int(windows(s)[0].shape[0]) for p, s in dsegs.items()}
    dtr, dva, dte = split_d1namo(dwin, seed)
    segs.update(dsegs)
    med_segs = segments(*load_medtronic(os.path.join(data_dir, "cgm", "medtronics_test_livia.csv")))

    def stack(pids):
        parts = [windows(segs[p]) for p in pids]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    info = {
        "people": {"hall": {"train": tr, "validation": va, "test": te},
                   "d1namo": {"train": dtr, "validation": dva, "test": dte},
                   "medtronic": {"train": ["medtronic-livia"]}},
        "diagnosis": diag,
        "segments": {p: len(s) for p, s in segs.items()},
        "d1namo_windows_per_person": dwin,
        "medtronic_segments": len(med_segs),
    }
    sets = {"hall": {"train": stack(tr), "val": stack(va), "test": stack(te)},
            "d1namo": {"train": stack(dtr), "val": stack(dva), "test": stack(dte)},
            "medtronic": {"train": windows(med_segs)}}
    info["windows"] = {pop: {k: int(v[0].shape[0]) for k, v in d.items()} for pop, d in sets.items()}
    return sets, info
