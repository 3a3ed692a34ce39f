"""``Deployment``: what ``rnndeploy tune --out DIR`` wrote, opened for use in an application.

    from rnndeploy.tune import Deployment

    dep = Deployment.open("deploy/")          # every artefact's sha256 checked against deploy.json
    with dep.runner(batch=32, seq=100) as r:  # the choice for the nearest measured shape at or above
        out = r.infer(feed)

A tune output is a directory: ``deploy.json`` and ``artefacts/`` (ONNX files, TensorRT engines
with their sidecars). ``open`` reads ``deploy.json`` field by field and hashes every artefact it
names before anything runs, so a file altered or swapped after tune chose it is refused (exit 2),
and an artefact path may not leave the directory.

Which choice serves a call: tune measured a grid of (batch, seq); a call at another shape takes
the choice of the smallest measured shape with batch ≥ its batch and seq ≥ its seq (latency grows
with both, so that shape's winner is the best measured guess), else — beyond the grid — the choice
at the largest measured batch and seq. ``choice_for`` says which, ``runner`` builds the backend
label's runner on that artefact (not activated: use it in a ``with`` block).

Torch-free: runs on the deploy side (Python 3.9, numpy 1.26).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from rnndeploy.errors import DataError

FORMAT = "rnndeploy.deploy"
DEPLOY_JSON = "deploy.json"


@dataclass(frozen=True)
class DeployChoice:
    """One measured shape's choice: the backend label and artefact that ran fastest there.

    Attributes:
        batch, seq: the shape tune measured.
        candidate: tune's row name ("ort-cpu:t1 int8-keep-head").
        variant: "fp32", an INT8 policy, "bf16", "fp16".
        artefact: absolute path of the file (ONNX or engine), its sha256 checked by ``open``.
        backend: the backend label to run it with ("ort-cpu:t1", "openvino:bf16:s2", "trt:fp16:copies").
        threads: intra-op threads (None: the runtime's default).
        decoder: a seq2seq model's decoder-step file of the same variant, else None.
        median_s / ort_default_median_s: what tune measured there (seconds).
    """

    batch: int
    seq: int
    candidate: str
    variant: str
    artefact: str
    backend: str
    threads: Optional[int]
    decoder: Optional[str]
    median_s: Optional[float]
    ort_default_median_s: Optional[float]


@dataclass(frozen=True)
class Deployment:
    """A verified tune output (see the module docstring)."""

    directory: str
    model: str
    choices: Tuple[DeployChoice, ...]

    @classmethod
    def open(cls, directory: str) -> Deployment:
        """Read ``DIR/deploy.json`` and check every artefact's sha256.

        Raises:
            DataError: no deploy.json, a malformed one, an artefact missing, outside the
                directory, or whose sha256 differs from the recorded one.
        """
        from rnndeploy import jsonio
        from rnndeploy.validation import Fields

        root = Path(directory).resolve()
        path = root / DEPLOY_JSON
        if not path.is_file():
            raise DataError(f"{directory} has no {DEPLOY_JSON}", "give the --out directory of rnndeploy tune")
        try:
            doc = jsonio.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise DataError(f"{path} is unreadable: {exc}", "run rnndeploy tune --out again") from exc
        f = Fields(doc, str(path), DataError)
        f.str("format", choices=[FORMAT])
        checked: Dict[str, str] = {}  # artefact path -> sha256 already verified (files shared by shapes)
        choices = []
        for c in f.records("choices", nonempty=True):
            runner = c.record("runner") or Fields({}, c.path("runner"), DataError)  # required: never None
            decoder = None
            if c.has("decoder_artefact"):
                decoder = _verified(root, c, "decoder_artefact", "decoder_sha256", checked)
            choices.append(DeployChoice(
                batch=c.int("batch", minimum=1), seq=c.int("seq", minimum=1), candidate=c.str("candidate"),
                variant=c.str("variant"), artefact=_verified(root, c, "artefact", "sha256", checked),
                backend=runner.str("backend"), threads=runner.int("threads", required=False, minimum=1),
                decoder=decoder, median_s=c.number("median_s", required=False, minimum=0),
                ort_default_median_s=c.number("ort_default_median_s", required=False, minimum=0)))
        return cls(str(root), f.str("model"), tuple(choices))

    def choice_for(self, batch: int, seq: int) -> DeployChoice:
        """The choice serving (batch, seq): the smallest measured shape at or above it, else the
        largest measured shape (module docstring)."""
        if batch < 1 or seq < 1:
            raise DataError(f"batch and seq must be at least 1, got batch {batch}, seq {seq}")
        above = [c for c in self.choices if c.batch >= batch and c.seq >= seq]
        if above:
            return min(above, key=lambda c: (c.batch * c.seq, c.batch, c.seq))
        return max(self.choices, key=lambda c: (c.batch * c.seq, c.batch, c.seq))

    def runner(self, batch: int, seq: int, options: Any = None) -> Any:
        """The (inactive) runner of ``choice_for(batch, seq)``: its backend label on its artefact."""
        from rnndeploy.backends import RunnerOptions, create_runner
        from rnndeploy.backends.source import resolve_source

        choice = self.choice_for(batch, seq)
        return create_runner(choice.backend, resolve_source(choice.artefact), options or RunnerOptions())

    def shapes(self) -> List[Tuple[int, int]]:
        return [(c.batch, c.seq) for c in self.choices]


def _verified(root: Path, c: Any, key: str, hash_key: str, checked: Dict[str, str]) -> str:
    """The absolute path of artefact ``c[key]`` inside ``root``, its sha256 equal to ``c[hash_key]``."""
    from rnndeploy.fileio import sha256_file

    rel, want = c.str(key), c.str(hash_key)
    path = (root / rel).resolve()
    if root not in path.parents:
        raise DataError(f"{c.path(key)} {rel!r} points outside {root}", "deploy.json names files under artefacts/")
    if not path.is_file():
        raise DataError(f"{c.path(key)}: {path} is missing", "copy the whole tune output directory")
    got = checked.get(str(path)) or sha256_file(path)
    if got != want:
        raise DataError(f"{path} does not match deploy.json (sha256 {got[:12]}…, recorded {want[:12]}…)",
                        "the file changed after tune chose it: run rnndeploy tune --out again")
    checked[str(path)] = got
    return str(path)
