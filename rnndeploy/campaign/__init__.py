"""Verification campaigns: every model of a prepared folder, on every runtime, in resumable
work units, merged into one report with a verdict per target.

A campaign is how this project checks its own GPU path (benchmarks/GPU_RUNBOOK.md), and how a
user can check many models on a machine that has only minutes of GPU time: everything that
needs torch is made beforehand on a CPU box, the GPU machine only builds, runs and times.

    prepare (CPU box, torch)            plan           schedule            steps             report
    checkpoints, ONNX, FP16 ONNX, ──▶ units by tier ──▶ state folder, ──▶ build / parity ──▶ targets, Markdown,
    torch FP32 goldens, manifest       (what is worth    deadline,          / bench / tasks    rnndeploy report
    (prepare.py)                        doing first)     crash markers      per runtime        (targets.py,
                                        (plan.py)        (schedule.py)      (steps.py)          summary.py)

``shipping.py`` moves a campaign and the TensorRT kit to an offline machine in size-limited
transfers (parts sized to each call, a call plan with a device-time budget, parts stashed and
unpacked as they arrive).

Layers: ``plan`` (manifest, units; no rnndeploy imports beyond errors) ← ``schedule`` ←
``steps`` (runners, parity, bench, engine builds through the CLI) ← ``summary``. Only
``prepare`` imports torch; everything else runs under the trt86 kit's Python 3.9 without torch.
"""
