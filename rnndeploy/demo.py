"""The demo pipeline: every stage of rnndeploy on one recipe, on whatever this machine has.

train → export → (build-engine, on a GPU box with TensorRT) → parity → bench → report.

Each stage is run as the very ``rnndeploy`` command a user would type (printed
before it runs), so the demo doubles as a walkthrough of the CLI. Stages whose
runtime is absent (no GPU, no TensorRT, no onnxruntime CUDA provider) are listed
as skipped with the reason, never silently dropped.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Set

from rnndeploy.errors import RnnDeployError, UsageError


@dataclass(frozen=True)
class Stage:
    """One step of the demo: the CLI arguments it runs, or why it is skipped."""

    name: str
    args: Sequence[str]
    skip_reason: Optional[str] = None

    @property
    def command(self) -> str:
        return "rnndeploy " + " ".join(shlex.quote(a) for a in self.args)


@dataclass(frozen=True)
class Machine:
    """What the demo can use here (see ``detect_machine``)."""

    has_gpu: bool
    has_tensorrt: bool
    ort_providers: Sequence[str]


def detect_machine() -> Machine:
    """Probe for a CUDA GPU, TensorRT and onnxruntime's providers (no engine or runtime is created)."""
    from rnndeploy.environment import probe_gpus
    from rnndeploy.optional import available

    providers: List[str] = []
    if available("onnxruntime"):
        import onnxruntime

        providers = list(onnxruntime.get_available_providers())
    return Machine(has_gpu=bool(probe_gpus()[0]), has_tensorrt=available("tensorrt"), ort_providers=providers)


def plan(out: Path, machine: Machine, recipe: str = "sine", quick: bool = False) -> List[Stage]:
    """The demo's stages for ``recipe``, writing everything under ``out``.

    Args:
        quick: smaller training budget and shorter benchmark (used by the tests).
    """
    ckpt, onnx, plan_file = out / "checkpoint", out / "model.onnx", out / "model.plan"
    parity_json, bench_json = out / "parity.json", out / "bench.json"
    gpu_ready = machine.has_gpu and machine.has_tensorrt
    gpu_reason = None if gpu_ready else ("no CUDA GPU visible" if not machine.has_gpu else "TensorRT is not installed")

    train = ["train", recipe, "--out", str(ckpt)] + (["--epochs", "2"] if quick else [])
    stages = [
        Stage("train", train),
        Stage("export", ["export", str(ckpt), "-o", str(onnx)]),
        Stage("build-engine", ["build-engine", str(onnx), "--fp16", "-o", str(plan_file)], gpu_reason),
    ]
    backends = ["torch", "ort-cpu"]
    if "CUDAExecutionProvider" in machine.ort_providers and machine.has_gpu:
        backends.append("ort-cuda")
    engine_args: List[str] = []
    if gpu_ready:
        backends.append("trt")
        engine_args = ["--engine", str(plan_file)]
    source = [str(onnx), "--checkpoint", str(ckpt)] + engine_args
    flags = [f for b in backends for f in ("--backend", b)]
    # One parity run per precision would be thorough; the demo checks FP32 parity of
    # every runtime against torch (FP16 engines are checked by `rnndeploy parity
    # --precision fp16` in the GPU verification).
    stages.append(Stage("parity", ["parity", *source, *flags, "--json", str(parity_json)]))
    sweep = ["--batch", "1,32", "--seq", "16,128"] if not quick else ["--batch", "1", "--seq", "16"]
    timing = ["--min-time", "0.3" if quick else "1.0"]
    stages.append(Stage("bench", ["bench", *source, *flags, *sweep, *timing, "--json", str(bench_json)]))
    stages.append(
        Stage(
            "report",
            ["report", str(parity_json), str(bench_json), "-o", str(out / "report.html"), "--markdown", str(out / "report.md")],
        )
    )
    return stages


def output_names(recipe: str = "sine") -> Set[str]:
    """Names of the entries the demo writes in its output directory (every stage, GPU ones
    included, and the engine's sidecar)."""
    top = Path("/demo")
    machine = Machine(has_gpu=True, has_tensorrt=True, ort_providers=["CUDAExecutionProvider"])
    names = {Path(a).name for s in plan(top, machine, recipe) for a in s.args if Path(a).parent == top}
    return names | {n + ".json" for n in names if n.endswith(".plan")}


def check_out_dir(out: str, recipe: str = "sine") -> None:
    """Refuse an existing ``out`` holding anything the demo does not write: a failed demo
    restores its output directory as it was, and a directory of the user's own files is
    no place for that (nor for a new demo).

    Raises:
        UsageError: ``out`` holds other entries (named, up to three).
    """
    if not str(out).strip():
        raise UsageError("--out: empty path", "give a directory name, e.g. --out runs/demo")
    out = Path(out)
    if not out.is_dir():
        return
    ours = output_names(recipe)
    other = sorted(e.name for e in out.iterdir() if e.name not in ours)
    if other:
        shown = ", ".join(other[:3]) + (", ..." if len(other) > 3 else "")
        raise UsageError(f"--out {out} holds files the demo does not write ({shown})",
                         "give a new or empty directory, or a previous demo's output directory")


def run(stages: Sequence[Stage], invoke: Callable[[Sequence[str]], int], echo: Callable[[str], None]) -> None:
    """Run ``stages`` in order through ``invoke(args) -> exit status``; stop at the first failure.

    Raises:
        RnnDeployError: a stage exited non-zero (its own message is already printed);
            the error names the stage and its command so the user can rerun it alone,
            and carries the stage's exit status.
    """
    runnable = [s for s in stages if s.skip_reason is None]
    for i, stage in enumerate(runnable, 1):
        echo(f"\n[{i}/{len(runnable)}] {stage.name}: {stage.command}")
        status = invoke(stage.args)
        if status:
            raise StageFailed(stage, status)
    for s in stages:
        if s.skip_reason is not None:
            echo(f"\n(skipped {s.name}: {s.skip_reason}; on a GPU box it runs: {s.command})")


class StageFailed(RnnDeployError):
    """A stage exited non-zero; its own one-line error is already printed."""

    def __init__(self, stage: Stage, status: int):
        super().__init__(f"demo stage {stage.name!r} failed (exit {status})", f"rerun it alone: {stage.command}")
        self.stage = stage
        self.exit_code = status
