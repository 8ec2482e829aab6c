"""Forecaster networks. Both architectures share the same wrapper, which does all scaling inside
the graph: input raw mg/dL [B, 96] (oldest first), outputs mean and std in mg/dL [B, 12].

  last  = x[:, -1]                       (the most recent reading)
  z     = (x - last) / delta_scale        (the window relative to the last value)
  level = (last - level_mean) / level_sd  (where the person currently is)
  body(z, level) -> [B, 24]
  mean  = last + delta_scale * body[:, :12]                       (predicts deltas from the last value)
  std   = delta_scale * std_temperature * (softplus(body[:, 12:]) + 1e-3)

Dropout layers stay active at inference (Monte Carlo dropout); the predictive distribution of one
forecast is the equal-weight mixture of the N samples' Gaussians.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

IN_STEPS = 96
HORIZON = 12


class Forecaster(nn.Module):
    def __init__(self, body, delta_scale, level_mean, level_sd, std_temperature=1.0, use_level=True):
        super().__init__()
        self.use_level = use_level
        self.body = body
        self.register_buffer("delta_scale", torch.tensor(float(delta_scale)))
        self.register_buffer("level_mean", torch.tensor(float(level_mean)))
        self.register_buffer("level_sd", torch.tensor(float(level_sd)))
        self.register_buffer("std_temperature", torch.tensor(float(std_temperature)))

    def forward(self, x):
        last = x[:, IN_STEPS - 1:IN_STEPS]
        z = (x - last) / self.delta_scale
        level = (last - self.level_mean) / self.level_sd
        if not self.use_level:  # the network sees only the shape of the window relative to its last value
            level = torch.zeros_like(last)
        out = self.body(z, level)
        mean = last + self.delta_scale * out[:, :HORIZON]
        std = (self.delta_scale * self.std_temperature) * (F.softplus(out[:, HORIZON:]) + 1e-3)
        return mean, std

    def macs(self):
        return self.body.macs()


class MLPBody(nn.Module):
    """[z, level] (97) -> hidden -> ReLU -> Dropout -> hidden -> ReLU -> Dropout -> 24,
    plus a linear skip from the input to the 12 mean outputs (the linear-regression part)."""

    def __init__(self, hidden=128, layers=2, dropout=0.1, skip=True):
        super().__init__()
        mods, d = [], IN_STEPS + 1
        for _ in range(layers):
            mods += [nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(dropout)]
            d = hidden
        self.net = nn.Sequential(*mods)
        self.head = nn.Linear(d, 2 * HORIZON)
        self.skip = nn.Linear(IN_STEPS + 1, HORIZON, bias=False) if skip else None
        self.dims = (hidden, layers)

    def forward(self, z, level):
        inp = torch.cat([z, level], dim=1)
        out = self.head(self.net(inp))
        if self.skip is not None:
            out = out + F.pad(self.skip(inp), (0, HORIZON))
        return out

    def macs(self):
        m = sum(l.in_features * l.out_features for l in self.modules() if isinstance(l, nn.Linear))
        return m


class PatchAttention(nn.Module):
    def __init__(self, d, heads, dropout):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.heads = heads
        self.drop = nn.Dropout(dropout)

    def forward(self, h):  # [B, T, d]
        B, T, d = h.shape
        hd = d // self.heads
        q, k, v = self.qkv(h).reshape(B, T, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        a = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(hd)), dim=-1)
        a = self.drop(a)
        o = torch.matmul(a, v).permute(0, 2, 1, 3).reshape(B, T, d)
        return self.out(o)


class PatchTransformerBody(nn.Module):
    """PatchTST-style: 96 steps -> 8 patches of 12 -> d_model tokens (+ learned positions) ->
    pre-norm encoder layers (attention + FFN, dropout) -> flatten -> 24, plus the same linear skip."""

    def __init__(self, patch=12, d=32, layers=1, heads=4, ff=64, dropout=0.1, skip=True):
        super().__init__()
        self.patch, self.T, self.d = patch, IN_STEPS // patch, d
        self.embed = nn.Linear(patch, d)
        self.pos = nn.Parameter(torch.randn(1, self.T, d) * 0.02)
        self.level = nn.Linear(1, d)
        self.layers = nn.ModuleList()
        for _ in range(layers):
            self.layers.append(nn.ModuleDict(dict(
                ln1=nn.LayerNorm(d), attn=PatchAttention(d, heads, dropout), drop1=nn.Dropout(dropout),
                ln2=nn.LayerNorm(d), ff1=nn.Linear(d, ff), ff2=nn.Linear(ff, d), drop2=nn.Dropout(dropout))))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(self.T * d, 2 * HORIZON)
        self.skip = nn.Linear(IN_STEPS + 1, HORIZON, bias=False) if skip else None
        self.cfg = (patch, d, layers, heads, ff)

    def forward(self, z, level):
        B = z.shape[0]
        h = self.embed(z.reshape(B, self.T, self.patch)) + self.pos + self.level(level).unsqueeze(1)
        for L in self.layers:
            h = h + L["drop1"](L["attn"](L["ln1"](h)))
            h = h + L["drop2"](L["ff2"](F.gelu(L["ff1"](L["ln2"](h)))))
        out = self.head(self.ln(h).reshape(B, self.T * self.d))
        if self.skip is not None:
            out = out + F.pad(self.skip(torch.cat([z, level], dim=1)), (0, HORIZON))
        return out

    def macs(self):
        patch, d, layers, heads, ff = self.cfg
        T = self.T
        m = T * patch * d + T * d  # embedding + level
        per = T * d * 3 * d + 2 * T * T * d + T * d * d + 2 * T * d * ff
        m += layers * per
        m += T * d * 2 * HORIZON
        if self.skip is not None:
            m += (IN_STEPS + 1) * HORIZON
        return m


class LinearBlend(nn.Module):
    """Post-hoc blend of a Forecaster's mean with a fixed linear-regression forecast, in the graph:

      mean = w * net_mean + (1 - w) * (x @ W + b)      (W [96, 12], b [12]: least squares on the
                                                         training people, raw mg/dL; w from validation)
      std  = net_std                                    (the temperature, refitted for the blend,
                                                         sits in the wrapped Forecaster)

    W, b and w are constants (no gradient); the network keeps its MC dropout, so each row is one
    sample of the blended forecast. Cost: one extra 96 -> 12 Gemm (1,152 MACs)."""

    def __init__(self, net, lr_weight, lr_bias, w):
        super().__init__()
        self.net = net
        self.lr = nn.Linear(IN_STEPS, HORIZON)
        with torch.no_grad():
            self.lr.weight.copy_(torch.as_tensor(lr_weight, dtype=torch.float32).T)
            self.lr.bias.copy_(torch.as_tensor(lr_bias, dtype=torch.float32))
        self.lr.requires_grad_(False)
        self.register_buffer("w_net", torch.tensor(float(w)))
        self.register_buffer("w_lr", torch.tensor(1.0 - float(w)))

    @property
    def std_temperature(self):
        return self.net.std_temperature

    def forward(self, x):
        mean, std = self.net(x)
        return self.w_net * mean + self.w_lr * self.lr(x), std

    def macs(self):
        return self.net.macs() + IN_STEPS * HORIZON
