"""Minimal ONNX Runtime runner over the C API with ctypes (no onnxruntime Python wheel is reachable
here). It loads the same libonnxruntime.so that the C# service uses: the NuGet package Microsoft.ML.OnnxRuntime
that processors/Forecast restores (train.sh passes its path in ORT_LIB).

The OrtApi function-table indices below are the positions of the members in ORT's C struct OrtApi
(append-only across versions, so they hold for any API version >= 4 requested here).
"""
import ctypes as C
import os
import time

import numpy as np

_IDX = dict(GetErrorMessage=2, CreateEnv=3, CreateSession=7, Run=9, CreateSessionOptions=10,
            SetSessionGraphOptimizationLevel=23, SetIntraOpNumThreads=24, SetInterOpNumThreads=25,
            CreateTensorWithDataAsOrtValue=49, GetTensorMutableData=51, CreateCpuMemoryInfo=69,
            ReleaseStatus=93, ReleaseMemoryInfo=94, ReleaseSession=95, ReleaseValue=96,
            ReleaseSessionOptions=100, AddSessionConfigEntry=130)
_P = C.c_void_p
_SIG = dict(
    GetErrorMessage=(C.c_char_p, [_P]),
    CreateEnv=(_P, [C.c_int, C.c_char_p, C.POINTER(_P)]),
    CreateSession=(_P, [_P, C.c_char_p, _P, C.POINTER(_P)]),
    Run=(_P, [_P, _P, C.POINTER(C.c_char_p), C.POINTER(_P), C.c_size_t, C.POINTER(C.c_char_p), C.c_size_t,
              C.POINTER(_P)]),
    CreateSessionOptions=(_P, [C.POINTER(_P)]),
    SetSessionGraphOptimizationLevel=(_P, [_P, C.c_int]),
    SetIntraOpNumThreads=(_P, [_P, C.c_int]),
    SetInterOpNumThreads=(_P, [_P, C.c_int]),
    CreateTensorWithDataAsOrtValue=(_P, [_P, _P, C.c_size_t, C.POINTER(C.c_int64), C.c_size_t, C.c_int,
                                         C.POINTER(_P)]),
    GetTensorMutableData=(_P, [_P, C.POINTER(_P)]),
    CreateCpuMemoryInfo=(_P, [C.c_int, C.c_int, C.POINTER(_P)]),
    ReleaseStatus=(None, [_P]), ReleaseMemoryInfo=(None, [_P]), ReleaseSession=(None, [_P]),
    ReleaseValue=(None, [_P]), ReleaseSessionOptions=(None, [_P]),
    AddSessionConfigEntry=(_P, [_P, C.c_char_p, C.c_char_p]),
)


def find_library():
    path = os.environ.get("ORT_LIB", "")
    return path if path and os.path.exists(path) else None


class Ort:
    def __init__(self, lib_path):
        self.lib = C.CDLL(lib_path)
        self.lib.OrtGetApiBase.restype = C.POINTER(_P * 2)
        base = self.lib.OrtGetApiBase().contents
        get_api = C.CFUNCTYPE(C.POINTER(_P * 200), C.c_uint32)(base[0])
        self.version = C.CFUNCTYPE(C.c_char_p)(base[1])().decode()
        table = get_api(17).contents
        self.f = {}
        for name, i in _IDX.items():
            res, args = _SIG[name]
            self.f[name] = C.CFUNCTYPE(res, *args)(table[i])
        self.env = _P()
        self._ok(self.f["CreateEnv"](3, b"forecast-check", C.byref(self.env)))  # 3 = ERROR
        self.mem = _P()
        self._ok(self.f["CreateCpuMemoryInfo"](0, 0, C.byref(self.mem)))  # arena allocator, default mem

    def _ok(self, status):
        if status:
            msg = self.f["GetErrorMessage"](status).decode()
            self.f["ReleaseStatus"](status)
            raise RuntimeError("ORT: " + msg)

    def session(self, path, mc_dropout=True, threads=1, opt_level=99):
        """mc_dropout=True disables the EliminateDropout optimizer (what the service must do);
        False keeps ORT defaults, which remove Dropout -> deterministic eval-mode outputs."""
        opts = _P()
        self._ok(self.f["CreateSessionOptions"](C.byref(opts)))
        self._ok(self.f["SetIntraOpNumThreads"](opts, threads))
        self._ok(self.f["SetInterOpNumThreads"](opts, 1))
        self._ok(self.f["SetSessionGraphOptimizationLevel"](opts, opt_level))
        if mc_dropout:
            self._ok(self.f["AddSessionConfigEntry"](opts, b"optimization.disable_specified_optimizers",
                                                    b"EliminateDropout"))
        sess = _P()
        self._ok(self.f["CreateSession"](self.env, path.encode(), opts, C.byref(sess)))
        self.f["ReleaseSessionOptions"](opts)
        return Session(self, sess)


class Session:
    def __init__(self, ort, handle):
        self.o, self.h = ort, handle

    def run(self, x, in_name=b"glucose_mg_dl", out_names=(b"mean_mg_dl", b"std_mg_dl")):
        x = np.ascontiguousarray(x, dtype=np.float32)
        f = self.o.f
        shape = (C.c_int64 * 2)(*x.shape)
        val = _P()
        self.o._ok(f["CreateTensorWithDataAsOrtValue"](self.o.mem, x.ctypes.data_as(_P), x.nbytes, shape, 2, 1,
                                                       C.byref(val)))
        names_in = (C.c_char_p * 1)(in_name)
        vals_in = (_P * 1)(val)
        names_out = (C.c_char_p * len(out_names))(*out_names)
        outs = (_P * len(out_names))()
        try:
            self.o._ok(f["Run"](self.h, None, names_in, vals_in, 1, names_out, len(out_names), outs))
            res = []
            for v in outs:
                p = _P()
                self.o._ok(f["GetTensorMutableData"](v, C.byref(p)))
                arr = np.ctypeslib.as_array(C.cast(p, C.POINTER(C.c_float)), shape=(x.shape[0], 12)).copy()
                res.append(arr)
                f["ReleaseValue"](v)
        finally:
            f["ReleaseValue"](val)
        return res

    def close(self):
        self.o.f["ReleaseSession"](self.h)


def check(onnx_path, torch_eval_fn, torch_mc_fn, X, log=print, throughput_forecasts=2000, mc=10):
    """Returns a dict of verification results. torch_eval_fn(X)->(mean,std) deterministic;
    torch_mc_fn(X, n)->(mus,sds) [n_win, n, 12]."""
    lib = find_library()
    if lib is None:
        return {"available": False, "note": "libonnxruntime.so not found (set ORT_LIB, or let train.sh restore it)"}
    ort = Ort(lib)
    out = {"available": True, "ort_version": ort.version, "library": "NuGet Microsoft.ML.OnnxRuntime " + ort.version}
    # 1) default optimisations: EliminateDropout removes Dropout -> must equal torch eval mode
    s_det = ort.session(onnx_path, mc_dropout=False)
    m, s = s_det.run(X)
    tm, ts = torch_eval_fn(X)
    out["default_session_matches_torch_eval_max_abs_mg_dl"] = float(max(np.abs(m - tm).max(), np.abs(s - ts).max()))
    m2, _ = s_det.run(X)
    out["default_session_deterministic"] = bool(np.array_equal(m, m2))
    s_det.close()
    # 2) MC session: Dropout active, runs differ, seeded -> a fresh session reproduces the first run
    s_mc = ort.session(onnx_path, mc_dropout=True)
    a, _ = s_mc.run(X)
    b, _ = s_mc.run(X)
    out["mc_two_runs_differ"] = bool(not np.array_equal(a, b))
    out["mc_two_runs_mean_abs_diff_mg_dl"] = float(np.abs(a - b).mean())
    s_mc2 = ort.session(onnx_path, mc_dropout=True)
    a2, _ = s_mc2.run(X)
    out["mc_fresh_session_reproduces_first_run"] = bool(np.array_equal(a, a2))
    s_mc2.close()
    # 3) MC statistics agree with torch's MC dropout (1000 samples of a few windows)
    n = 1000
    xs = X[:4]
    om, osd = s_mc.run(np.repeat(xs, n, axis=0))
    om, osd = om.reshape(len(xs), n, 12), osd.reshape(len(xs), n, 12)
    pm, ps = torch_mc_fn(xs, n)
    se = np.sqrt(om.var(axis=1) / n + pm.var(axis=1) / n) + 1e-6
    out["mc_mean_vs_torch_max_z"] = float((np.abs(om.mean(axis=1) - pm.mean(axis=1)) / se).max())
    out["mc_spread_ratio_ort_over_torch"] = float(om.std(axis=1).mean() / pm.std(axis=1).mean())
    s_mc.close()
    # 4) throughput: batches of `throughput_forecasts` forecasts x `mc` samples (rows repeated)
    rng = np.random.RandomState(0)
    xb = np.repeat(X[rng.randint(0, len(X), throughput_forecasts)], mc, axis=0)
    tp = {}
    for threads in (1, 2):
        sess = ort.session(onnx_path, mc_dropout=True, threads=threads)
        for _ in range(3):
            sess.run(xb)
        wall, cpu = [], []
        for _ in range(15):
            t0, c0 = time.perf_counter(), time.process_time()
            sess.run(xb)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        sess.close()
        tp[f"threads_{threads}"] = {
            "batch_rows": int(len(xb)),
            "median_ms": round(float(np.median(wall)) * 1e3, 2),
            "min_ms": round(float(np.min(wall)) * 1e3, 2),
            "forecasts_per_s_median": round(throughput_forecasts / float(np.median(wall))),
            "forecasts_per_s_best": round(throughput_forecasts / float(np.min(wall))),
            "cpu_ms_median": round(float(np.median(cpu)) * 1e3, 2),
        }
    out["throughput"] = tp
    return out
