"""TEST FIXTURE, not a forecaster: writes tiny-forecaster.onnx, a small random network with the production
model's interface (processors/Forecast/Model/glucose-forecaster.json), so the forecaster's tests do not depend
on the trained model.

  input  glucose_mg_dl [batch, 96] float32, mg/dL, oldest first
  output mean_mg_dl    [batch, 12] float32, the Gaussian mean of one Monte Carlo dropout sample
         std_mg_dl     [batch, 12] float32, its standard deviation
  two Dropout nodes (p = 0.1) in training mode with seed attributes 7001 and 7002

Its mean is the input's average plus at most 3 mg/dL, so a flat input forecasts near its own level.
Regenerate (deterministic) with Debian's torch and onnx:  /usr/bin/python3 make_fixture_model.py
"""
import io
import os

import onnx
import torch
from onnx import helper

torch.manual_seed(20261123)


class TinyForecaster(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = torch.nn.Linear(96, 32)
        self.d1 = torch.nn.Dropout(0.1)
        self.l2 = torch.nn.Linear(32, 32)
        self.d2 = torch.nn.Dropout(0.1)
        self.l3 = torch.nn.Linear(32, 24)

    def forward(self, x):
        level = x.mean(dim=1, keepdim=True)
        z = (x - x[:, 95:96]) / 20.0
        h = self.d1(torch.relu(self.l1(z)))
        h = self.d2(torch.relu(self.l2(h)))
        o = self.l3(h)
        mean = level + 3.0 * torch.tanh(o[:, :12])
        std = 4.0 + torch.nn.functional.softplus(o[:, 12:])
        return mean, std


def main():
    m = TinyForecaster().train()
    buf = io.BytesIO()
    torch.onnx.export(m, torch.full((2, 96), 120.0), buf, input_names=["glucose_mg_dl"],
                      output_names=["mean_mg_dl", "std_mg_dl"],
                      dynamic_axes={"glucose_mg_dl": {0: "batch"}, "mean_mg_dl": {0: "batch"}, "std_mg_dl": {0: "batch"}},
                      opset_version=17, training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    g = onnx.load_from_string(buf.getvalue())
    dropouts = [n for n in g.graph.node if n.op_type == "Dropout"]
    assert len(dropouts) == 2, dropouts
    for k, n in enumerate(dropouts):
        n.attribute.append(helper.make_attribute("seed", 7001 + k))
    for n in g.graph.node:
        n.doc_string = ""
    g.doc_string = "StreamHealth TEST FIXTURE (random weights): tests/StreamHealth.Tests/Forecast/Fixtures/make_fixture_model.py"
    g.producer_name = "streamhealth-test-fixture"
    onnx.checker.check_model(g, full_check=True)
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny-forecaster.onnx")
    onnx.save(g, out)
    print(out, os.path.getsize(out), "bytes")


if __name__ == "__main__":
    main()
