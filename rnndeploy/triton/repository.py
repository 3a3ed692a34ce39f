"""Write (and check) a Triton model repository for an rnndeploy ONNX file or TensorRT engine.

    REPO/<name>/config.pbtxt
    REPO/<name>/1/model.onnx      (onnxruntime backend)  or  REPO/<name>/1/model.plan (tensorrt)
                                  (+ model.plan.json, the engine's sidecar; Triton ignores it)

The config is built from the file's own I/O (modelio), parsed back with Triton's schema and
checked against the server's load-time rules (config.check_config) before anything is
written; the model directory appears whole (built under a temporary name, then renamed) or
not at all. A streaming model (optional state inputs) gets its Triton streaming form
(streaming.prepare_streaming) and ``sequence_batching`` with implicit state; its engine must
be built from that form (``rnndeploy build-engine REPO/<name>/1/model.onnx``).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Tuple

from rnndeploy.errors import RnnDeployError, UsageError
from rnndeploy.triton.config import (
    ConfigOptions,
    Streaming,
    build_config,
    check_config,
    parse_pbtxt,
    to_message,
    to_pbtxt,
)
from rnndeploy.triton.modelio import MODEL_FILES, ONNX_PLATFORM, TRT_PLATFORM, engine_io, onnx_io

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class RepositoryModel:
    """What ``write_repository`` wrote."""

    name: str
    directory: Path
    platform: str
    streaming: bool
    max_batch_size: int
    config_text: str
    notes: Tuple[str, ...] = ()

    @property
    def model_file(self) -> Path:
        return self.directory / "1" / MODEL_FILES[self.platform]

    def render(self) -> str:
        kind = "streaming, implicit state" if self.streaming else "stateless"
        batching = f"max batch {self.max_batch_size}" if self.max_batch_size else "no batching"
        return f"{self.directory} ({self.platform}, {kind}, {batching})"


def model_name(text: str) -> str:
    """A Triton model name from ``text`` (letters, digits, ``_ . -``)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "model"
    return name


def write_repository(model: str, repo: str, *, name: Optional[str] = None, graph: Optional[str] = None,
                     options: Optional[ConfigOptions] = None, streaming: Optional[bool] = None,
                     keep_state_layout: bool = False, overwrite: bool = False) -> RepositoryModel:
    """Write ``REPO/<name>/`` for ``model`` (an rnndeploy ONNX file or TensorRT engine).

    Args:
        name: Triton model name (default: the spec's name, plus the graph for multi-graph models).
        graph: for a foreign ONNX file without metadata only; rnndeploy files name their graph.
        streaming: keep state on the server (default: when the file takes the model's optional
            state inputs); False serves the state tensors as plain inputs/outputs.
        keep_state_layout: serve explicit state tensors ([layers, batch, hidden], e.g. a seq2seq
            decoder step's) as they are, without batching; by default they are made batch-first
            (a Transpose inside, checked in ONNX Runtime) so Triton can batch the model.
        overwrite: replace an existing ``REPO/<name>``.

    Raises:
        UsageError: bad paths/options, a model the options do not fit, an existing model dir.
        RnnDeployError: the config fails Triton's rules (a bug: nothing is written).
    """
    from rnndeploy.artefacts.naming import classify

    opts = options or ConfigOptions()
    path = Path(model)
    if not path.is_file():
        raise UsageError(f"model {model} does not exist", "give an ONNX file or a TensorRT engine (.plan)")
    try:
        kind: Optional[str] = classify(str(path))
    except UsageError:  # neither name nor content says: refused below in Triton's terms
        kind = None
    if kind == "onnx":
        platform = ONNX_PLATFORM
    elif kind == "engine":
        platform = TRT_PLATFORM
    else:
        raise UsageError(f"{model} is neither an ONNX file nor a TensorRT engine",
                         "export a checkpoint first (rnndeploy export CKPT -o model.onnx); engines end in .plan")
    repo_path = Path(repo)
    if repo_path.exists() and not repo_path.is_dir():
        raise UsageError(f"repository {repo} exists and is not a directory")

    if platform == ONNX_PLATFORM:
        io, payload, spec, gname, stream, batch_hint, source_note = _onnx_model(path, graph, streaming,
                                                                                keep_state_layout)
    else:
        io, payload, spec, gname, stream, batch_hint, source_note = _engine_model(path, streaming)

    if name is None:
        name = model_name(spec.name if len(spec.graphs) == 1 else f"{spec.name}-{gname}")
    elif not _NAME.match(name):
        raise UsageError(f"model name {name!r} has characters Triton does not accept", "use letters, digits, _ . -")
    elif name.startswith("."):  # "." and ".." would write into REPO/ itself or above it; ".x" is hidden
        raise UsageError(f"model name {name!r} starts with a dot", "start it with a letter or digit")
    built = build_config(name, io, opts, stream, batch_hint)
    message = to_message(built.config)
    header = [f"written by rnndeploy from {path.name} ({source_note})"] + list(built.notes)
    if stream is not None:
        from rnndeploy.triton.config import describe_streaming_controls

        header.append("implicit state: clients send only new inputs, with sequence_id / sequence_start / sequence_end; "
                      + describe_streaming_controls())
    text = to_pbtxt(message, header)
    parsed = parse_pbtxt(text)  # what the server will read, round-tripped through the schema
    problems = check_config(parsed, io)
    if problems:
        raise RnnDeployError(f"the config rnndeploy built for {name} breaks Triton's rules: {'; '.join(problems)}",
                             "please report this; nothing was written")

    target = repo_path / name
    if target.exists() and not overwrite:
        raise UsageError(f"{target} already exists", "pass --overwrite to replace it, or choose another --name")
    created = not repo_path.exists()
    if created:
        if not repo_path.parent.is_dir():
            raise UsageError(f"cannot create repository {repo}: directory {repo_path.parent} does not exist")
        repo_path.mkdir()
    from rnndeploy.fileio import atomic_dir

    try:
        with atomic_dir(target) as tmp:
            (tmp / "1").mkdir()
            (tmp / "config.pbtxt").write_text(text, encoding="utf-8")
            dst = tmp / "1" / MODEL_FILES[platform]
            if isinstance(payload, Path):
                shutil.copyfile(payload, dst)
                if platform == TRT_PLATFORM:  # the sidecar (TensorRT version, GPU, profiles, spec) travels with it
                    from rnndeploy.engine.sidecar import sidecar_path

                    shutil.copyfile(sidecar_path(payload), sidecar_path(dst))
            else:
                dst.write_bytes(payload)
    except BaseException:
        if created:  # a repository this call created holds nothing half-written
            shutil.rmtree(repo_path, ignore_errors=True)
        raise
    notes = ((source_note,) if platform == ONNX_PLATFORM and source_note != "as exported" else ()) + built.notes
    return RepositoryModel(name, target, platform, stream is not None, int(built.config["max_batch_size"]), text, notes)


def _onnx_model(path: Path, graph: Optional[str], streaming: Optional[bool], keep_state_layout: bool) -> Tuple[Any, ...]:
    """(io, payload, spec, graph, Streaming|None, batch_hint, note) for an ONNX file."""
    from rnndeploy.artefacts.onnx_file import check_graph, load_onnx
    from rnndeploy.backends.source import resolve_source
    from rnndeploy.engine.profiles import engine_defaults, parse_range
    from rnndeploy.onnx_info import describe_onnx
    from rnndeploy.triton.streaming import is_streaming, prepare_streaming, verify_streaming

    source = resolve_source(onnx=str(path), graph=graph, auto_checkpoint=False)
    info = describe_onnx(str(path))
    gspec = source.graph_spec
    defaults = engine_defaults(source.spec.attrs, info.export_info)
    batch_hint = parse_range(str(defaults["batch"]) if not isinstance(defaults.get("batch"), (list, tuple))
                             else ":".join(str(v) for v in defaults["batch"]), "[engine] batch") if "batch" in defaults else None
    stream_wanted = is_streaming(gspec) if streaming is None else streaming
    if stream_wanted and not is_streaming(gspec):
        raise UsageError(f"{path} has no optional state inputs, so nothing to keep on the server",
                         "export it with --with-state, or drop --streaming")
    model = load_onnx(str(path))  # external data included: the repository gets one self-contained file
    check_graph(model, str(path))  # Triton would refuse to load it
    if not stream_wanted:
        io = onnx_io(str(path), gspec)
        states = {t.name for t in gspec.inputs + gspec.outputs if t.role == "state"}
        not_first = [t.name for t in io.inputs + io.outputs if t.name in states and not t.batch_first]
        if not_first and not keep_state_layout:
            from rnndeploy.graph.normalize import state_batch_first
            from rnndeploy.graph.verify import verify_same_function

            rewritten, rewrites = state_batch_first(model)
            verify_same_function(model, rewritten, {r.node: r.perm for r in rewrites if r.perm is not None})
            note = (f"state tensors {', '.join(not_first)} made batch-first so Triton can batch them "
                    "(Transpose inside; checked against the original)")
            return onnx_io(rewritten), _single_file(rewritten), source.spec, source.graph, None, batch_hint, note
        payload: Any = path if not info.external_data else _single_file(model)
        return io, payload, source.spec, source.graph, None, batch_hint, "as exported"
    triton_model, stream = prepare_streaming(model)
    checked = verify_streaming(model, triton_model, stream)
    payload = _single_file(triton_model)
    note = "streaming form: batch-first state, START/END/READY/CORRID inputs"
    note += "; checked against the original in ONNX Runtime" if checked else "; onnxruntime missing, not run"
    return onnx_io(triton_model), payload, source.spec, source.graph, stream, batch_hint, note


def _single_file(model: Any) -> bytes:
    data = model.SerializeToString()
    if len(data) >= 2**31:
        raise UsageError("the model is 2 GiB or larger and cannot be one ONNX file",
                         "serve it from a directory with its external data next to model.onnx")
    return data


def _engine_model(path: Path, streaming: Optional[bool]) -> Tuple[Any, ...]:
    from rnndeploy.spec import ModelSpec
    from rnndeploy.triton.streaming import CONTROLS, is_streaming, state_pairs

    io, side = engine_io(str(path))
    if not isinstance(side.get("spec"), dict):
        raise UsageError(f"engine {path} has no model spec in its sidecar", "rebuild it with rnndeploy build-engine")
    spec = ModelSpec.from_dict(side["spec"])
    gname = side.get("graph") or next(iter(spec.graphs))
    gspec = spec.graph(gname).streaming(bool(side.get("with_state")))
    stream_wanted = is_streaming(gspec) if streaming is None else streaming
    stream = None
    notes = []
    if stream_wanted:
        pairs = state_pairs(gspec)
        present = {k: v for k, v in CONTROLS.items() if io.input(v) is not None}
        unbatched = [i for i, _ in pairs if io.input(i) is None or not io.input(i).batch_first]
        if unbatched or not present:
            raise UsageError(f"engine {path} was built from an ONNX file without Triton's sequence controls "
                             f"and batch-first state ({', '.join(unbatched) or 'no START/READY input'})",
                             "write the ONNX repository first (rnndeploy triton MODEL.onnx -o REPO), build the engine "
                             "from REPO/<name>/1/model.onnx, then run rnndeploy triton on that engine")
        dropped = [v for v in CONTROLS.values() if v not in present.values()]
        if dropped:  # TensorRT may leave out inputs the network never reads (END, CORRID)
            notes.append(f"the engine has no {', '.join(dropped)} input; Triton sends only the controls a model has")
        stream = Streaming(pairs, present)
    built = (side.get("tensorrt") or {}).get("version")
    gpu = (side.get("gpu") or {}).get("name")
    note = "; ".join([f"TensorRT {built or '?'} engine for {gpu or '?'}; Triton's TensorRT must be the same version"]
                     + notes)
    return io, path, spec, gname, stream, None, note


# -- checking an existing repository ---------------------------------------------------------------
@dataclass(frozen=True)
class ModelCheck:
    name: str
    platform: str
    problems: Tuple[str, ...]


def check_repository(repo: str) -> List[ModelCheck]:
    """Check every model directory of ``repo`` the way Triton would load it (offline rules).

    Raises:
        UsageError: not a directory, or no model directory in it.
    """
    root = Path(repo)
    if not root.is_dir():
        raise UsageError(f"repository {repo} is not a directory")
    found = sorted(p for p in root.iterdir() if (p / "config.pbtxt").is_file())
    if not found:
        raise UsageError(f"{repo} holds no model directory with a config.pbtxt", "write one with rnndeploy triton MODEL -o REPO")
    out = []
    for d in found:
        problems: List[str] = []
        try:
            cfg = parse_pbtxt((d / "config.pbtxt").read_text(encoding="utf-8"), str(d / "config.pbtxt"))
        except UsageError as exc:
            out.append(ModelCheck(d.name, "?", (str(exc),)))
            continue
        from rnndeploy.triton.config import BACKEND_PLATFORMS

        platform = cfg.platform or BACKEND_PLATFORMS.get(cfg.backend, cfg.backend)
        if cfg.name and cfg.name != d.name:
            problems.append(f"config name {cfg.name!r} differs from its directory {d.name!r}")
        versions = sorted(v for v in d.iterdir() if v.is_dir() and v.name.isdigit())
        if not versions:
            problems.append("no numeric version directory (e.g. 1/)")
        elif platform in MODEL_FILES:
            filename = cfg.default_model_filename or MODEL_FILES[platform]
            model_file = versions[-1] / filename
            if not model_file.is_file():
                problems.append(f"{model_file.relative_to(root)} is missing")
            elif platform in (ONNX_PLATFORM, TRT_PLATFORM):
                try:
                    io = onnx_io(str(model_file)) if platform == ONNX_PLATFORM else engine_io(str(model_file))[0]
                    problems += check_config(cfg, io)
                except UsageError as exc:
                    problems.append(str(exc))
        else:
            problems.append(f"platform/backend {platform!r} is not one rnndeploy checks")
        out.append(ModelCheck(d.name, platform, tuple(problems)))
    return out
