"""``rnndeploy tune``: the fastest correct CPU deployment per (batch, seq) — see sweep.py."""

from __future__ import annotations

from rnndeploy.tune.deployment import DeployChoice, Deployment
from rnndeploy.tune.results import AccuracyCheck, Candidate, Choice, TuneResult
from rnndeploy.tune.sweep import BASELINE, TuneConfig, run_tune

__all__ = ["BASELINE", "AccuracyCheck", "Candidate", "Choice", "DeployChoice", "Deployment", "TuneConfig",
           "TuneResult", "run_tune"]
