"""ONNX export with Monte Carlo dropout kept in the graph."""
import copy
import io
import warnings

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper


def export_onnx(model, path, dropout_seed_base, opset=17):
    """Exports `model` in training mode (TrainingMode.PRESERVE on a train()-mode, BatchNorm-free
    module), so every Dropout node carries training_mode=True; then gives each Dropout node a
    `seed` attribute (dropout_seed_base + k) and strips doc strings. Returns a summary dict."""
    m = copy.deepcopy(model).cpu()
    m.train()
    assert not any(isinstance(x, torch.nn.modules.batchnorm._BatchNorm) for x in m.modules())
    dummy = torch.full((2, 96), 120.0)
    buf = io.BytesIO()
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # shapes are static per row
    torch.onnx.export(
        m, dummy, buf, input_names=["glucose_mg_dl"], output_names=["mean_mg_dl", "std_mg_dl"],
        dynamic_axes={"glucose_mg_dl": {0: "batch"}, "mean_mg_dl": {0: "batch"}, "std_mg_dl": {0: "batch"}},
        opset_version=opset, training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    g = onnx.load_from_string(buf.getvalue())
    consts = {}
    for n in g.graph.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    inits = {i.name: numpy_helper.to_array(i) for i in g.graph.initializer}
    dropouts = []
    for k, n in enumerate([n for n in g.graph.node if n.op_type == "Dropout"]):
        for a in list(n.attribute):
            if a.name == "seed":
                n.attribute.remove(a)
        n.attribute.append(helper.make_attribute("seed", int(dropout_seed_base + k)))
        ratio = consts.get(n.input[1], inits.get(n.input[1])) if len(n.input) > 1 else None
        tm = consts.get(n.input[2], inits.get(n.input[2])) if len(n.input) > 2 else None
        dropouts.append({"node": n.name, "seed": int(dropout_seed_base + k),
                         "ratio": None if ratio is None else float(ratio),
                         "training_mode": None if tm is None else bool(tm)})
        if tm is None or not bool(tm):
            raise RuntimeError(f"Dropout node {n.name} is not in training mode")
    for n in g.graph.node:
        n.doc_string = ""
    g.doc_string = ""
    g.producer_name = "StreamHealth processors/Forecast/Training"
    onnx.checker.check_model(g, full_check=True)
    onnx.save(g, path)
    ops = {}
    for n in g.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return {"opset": opset, "dropout_nodes": dropouts, "ops": ops,
            "initializers": len(g.graph.initializer),
            "parameters": int(sum(np.prod(i.dims) for i in g.graph.initializer))}
