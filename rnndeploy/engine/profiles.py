"""TensorRT optimization profiles: derived from the model's metadata, or given by the user.

A profile gives every dynamic input a (min, opt, max) shape. TensorRT picks one tactic
set per profile, tuned for ``opt``, so RNN users who serve both batch-1 streaming and
large offline batches want several profiles (NVIDIA/TensorRT#1166).

Three ways in, in order of precedence:
1. trtexec syntax: ``--min-shapes x:1x1x8,lengths:1`` (+ ``--opt-shapes``,
   ``--max-shapes``); repeating the three options adds profiles;
2. the shorthand: ``--batch 1:8:32 --seq 1:128:1024`` (``--dim NAME=MIN:OPT:MAX`` for
   any other named axis), or ``--profile batch=1:1:1,seq=1:128:2048`` repeated, one
   profile each;
3. nothing: the recipe's ``[engine]`` defaults carried in the ONNX metadata (export
   info or spec attrs, key ``engine``), else ``DEFAULT_RANGES``.
Named axes come from the model spec (``batch``, ``seq``, ``src_seq``); an ONNX file
without rnndeploy metadata contributes its ``dim_param`` names.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from rnndeploy.errors import ShapeError, UsageError
from rnndeploy.spec import DYNAMIC_DIMS, TensorSpec, named_dims

Range = Tuple[int, int, int]  # (min, opt, max)
Shape = Tuple[int, ...]

# Used when neither the user nor the model metadata says otherwise.
DEFAULT_RANGES: Dict[str, Range] = {"batch": (1, 8, 32), "seq": (1, 128, 1024), "src_seq": (1, 64, 256)}


@dataclass(frozen=True)
class ShapeRange:
    """(min, opt, max) shapes of one input."""

    min: Shape
    opt: Shape
    max: Shape

    def to_dict(self) -> Dict[str, List[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Sequence[int]]) -> ShapeRange:
        return cls(tuple(int(v) for v in d["min"]), tuple(int(v) for v in d["opt"]), tuple(int(v) for v in d["max"]))

    def contains(self, shape: Sequence[int]) -> bool:
        return len(shape) == len(self.min) and all(lo <= s <= hi for s, lo, hi in zip(shape, self.min, self.max))

    def render(self) -> str:
        """e.g. "[1..32, 1..1024, 8] (opt [8, 128, 8])"."""
        axes = [str(lo) if lo == hi else f"{lo}..{hi}" for lo, hi in zip(self.min, self.max)]
        return f"[{', '.join(axes)}] (opt {list(self.opt)})"


@dataclass(frozen=True)
class Profile:
    """One optimization profile: input name → ShapeRange (every dynamic input)."""

    shapes: Mapping[str, ShapeRange]

    def to_dict(self) -> Dict[str, Dict[str, List[int]]]:
        return {name: r.to_dict() for name, r in self.shapes.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Mapping[str, Sequence[int]]]) -> Profile:
        return cls({name: ShapeRange.from_dict(r) for name, r in d.items()})

    def contains(self, shapes: Mapping[str, Sequence[int]]) -> bool:
        """True when every given input shape lies inside this profile's ranges."""
        return all(name in self.shapes and self.shapes[name].contains(s) for name, s in shapes.items())

    def distance(self, shapes: Mapping[str, Sequence[int]]) -> float:
        """How far ``shapes`` are from ``opt`` (sum of |log ratio| over axes): smaller is a better fit."""
        total = 0.0
        for name, s in shapes.items():
            r = self.shapes.get(name)
            if r is not None:
                total += sum(abs(math.log(max(a, 1) / max(o, 1))) for a, o in zip(s, r.opt))
        return total

    def render(self) -> str:
        return "; ".join(f"{name} {r.render()}" for name, r in self.shapes.items())


def describe_profiles(profiles: Sequence[Profile]) -> str:
    """One line per profile, e.g. for a shape error."""
    return " | ".join(f"profile {i}: {p.render()}" for i, p in enumerate(profiles))


# -- parsing -----------------------------------------------------------------------------------
# TensorRT dimensions are 32-bit signed integers.
MAX_DIM = 2**31 - 1


def parse_range(text: str, what: str) -> Range:
    """``"1:8:32"`` → (1, 8, 32); ``"8"`` → (8, 8, 8). ``what`` names the option in errors."""
    parts = [p.strip() for p in str(text).strip().split(":")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise UsageError(f"{what}: {text!r} is not MIN:OPT:MAX", "write three integers such as 1:8:32, or one for a fixed size")
    lo, opt, hi = values
    if not (1 <= lo <= opt <= hi):
        raise UsageError(f"{what}: {text!r} needs 1 <= min <= opt <= max", "e.g. 1:8:32")
    if hi > MAX_DIM:
        raise UsageError(f"{what}: {text!r}: {hi} is larger than TensorRT's largest dimension {MAX_DIM}",
                         "give a realistic maximum")
    return lo, opt, hi


def parse_dim_assignments(text: str, what: str) -> Dict[str, Range]:
    """``"batch=1:8:32,seq=1:128:1024"`` → {"batch": (1, 8, 32), "seq": (1, 128, 1024)}."""
    out: Dict[str, Range] = {}
    for item in [p for p in str(text).split(",") if p.strip()]:
        if "=" not in item:
            raise UsageError(f"{what}: {item!r} is not NAME=MIN:OPT:MAX", "e.g. batch=1:8:32,seq=1:128:1024")
        name, rng = item.split("=", 1)
        name = name.strip()
        if not name:
            raise UsageError(f"{what}: {item!r} has no axis name", "e.g. seq=1:128:1024")
        if name in out:
            raise UsageError(f"{what}: axis {name!r} given twice")
        out[name] = parse_range(rng, f"{what} {name}")
    if not out:
        raise UsageError(f"{what}: no axis given", "e.g. batch=1:8:32,seq=1:128:1024")
    return out


_SHAPE_ITEM = re.compile(r"""\s*(?:'([^']*)'|"([^"]*)"|([^,]*?))\s*:\s*([0-9x]*)\s*(?:,|$)""")


def parse_trtexec_shapes(text: str, what: str = "--min-shapes") -> Dict[str, Shape]:
    """trtexec's shape syntax: ``"x:1x1x8,lengths:1"`` → {"x": (1, 1, 8), "lengths": (1,)}.

    Names holding ``:`` or ``,`` are quoted as trtexec does: ``'input:0':1x3``. A scalar
    input is written ``name:`` (empty shape).
    """
    out: Dict[str, Shape] = {}
    pos, text = 0, str(text)
    while pos < len(text):
        m = _SHAPE_ITEM.match(text, pos)
        if not m or m.end() == pos:
            raise UsageError(f"{what}: cannot read {text[pos:]!r}", "write NAME:DxDxD[,NAME:D...] e.g. x:1x1x8,lengths:1")
        name = next(g for g in m.groups()[:3] if g is not None)
        dims = m.group(4)
        if not name:
            raise UsageError(f"{what}: an entry has no input name in {text!r}", "write NAME:DxDxD")
        try:
            shape = tuple(int(d) for d in dims.split("x")) if dims else ()
        except ValueError:
            raise UsageError(f"{what}: shape {dims!r} of {name!r} is not DxDxD", "e.g. x:1x128x8") from None
        if name in out:
            raise UsageError(f"{what}: input {name!r} given twice")
        out[name] = shape
        pos = m.end()
    if not out:
        raise UsageError(f"{what}: no shapes given", "write NAME:DxDxD[,NAME:D...]")
    return out


# -- building profiles -------------------------------------------------------------------------
def profiles_from_trtexec(mins: Sequence[str], opts: Sequence[str], maxs: Sequence[str]) -> List[Profile]:
    """Profiles from repeated --min-shapes/--opt-shapes/--max-shapes (the i-th of each → profile i).
    ``opts`` may be empty: opt = max, as trtexec does when only min and max are given."""
    if not mins and not opts and not maxs:
        return []
    if len(mins) != len(maxs) or (opts and len(opts) != len(mins)):
        raise UsageError(
            f"got {len(mins)} --min-shapes, {len(opts)} --opt-shapes and {len(maxs)} --max-shapes",
            "give --min-shapes and --max-shapes (and --opt-shapes) once per profile",
        )
    profiles = []
    for i in range(len(mins)):
        lo = parse_trtexec_shapes(mins[i], "--min-shapes")
        hi = parse_trtexec_shapes(maxs[i], "--max-shapes")
        mid = parse_trtexec_shapes(opts[i], "--opt-shapes") if opts else dict(hi)
        names = list(lo)
        for other, label in ((hi, "--max-shapes"), (mid, "--opt-shapes")):
            if set(other) != set(lo):
                raise UsageError(
                    f"profile {i}: {label} names inputs {sorted(other)} but --min-shapes names {sorted(lo)}",
                    "name the same inputs in all three options",
                )
        profiles.append(Profile({n: ShapeRange(lo[n], mid[n], hi[n]) for n in names}))
    return profiles


def profile_from_ranges(inputs: Sequence[TensorSpec], ranges: Mapping[str, Range], origin: str = "") -> Profile:
    """One profile: each input's named axes take ``ranges[name]``; fixed axes stay fixed.

    Raises:
        UsageError: an input has a named axis with no range (naming input, axis and option).
    """
    shapes: Dict[str, ShapeRange] = {}
    for t in inputs:
        lo: List[int] = []
        mid: List[int] = []
        hi: List[int] = []
        for axis, d in enumerate(t.dims):
            if isinstance(d, int):
                lo.append(d)
                mid.append(d)
                hi.append(d)
                continue
            if d not in ranges:
                known = ", ".join(sorted(ranges)) or "none"
                option = f"--{d} MIN:OPT:MAX" if d in ("batch", "seq") else f"--dim {d}=MIN:OPT:MAX"
                raise UsageError(
                    f"input {t.name!r} axis {axis} is dynamic ({d!r}) and no range was given for it{origin}",
                    f"pass {option} (ranges given: {known})",
                )
            a, b, c = ranges[d]
            lo.append(a)
            mid.append(b)
            hi.append(c)
        shapes[t.name] = ShapeRange(tuple(lo), tuple(mid), tuple(hi))
    return Profile(shapes)


def engine_defaults(spec_attrs: Optional[Mapping[str, Any]], export_info: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """The recipe's ``[engine]`` table as carried in the ONNX metadata (export info first,
    then spec attrs), or {} when absent."""
    for src in (export_info or {}, spec_attrs or {}):
        value = src.get("engine") if isinstance(src, Mapping) else None
        if isinstance(value, Mapping):
            return dict(value)
    return {}


def _ranges_from_defaults(defaults: Mapping[str, Any]) -> List[Dict[str, Range]]:
    """Profiles (as axis → range maps) from an ``[engine]`` table: either axis keys
    (``batch = [1, 8, 32]`` or ``"1:8:32"``) or ``profiles = [{batch=..., seq=...}, ...]``."""

    def one(table: Mapping[str, Any], where: str) -> Dict[str, Range]:
        out: Dict[str, Range] = {}
        for key, value in table.items():
            if not isinstance(key, str) or key in _NON_AXIS_KEYS:
                continue
            if isinstance(value, (list, tuple)):
                value = ":".join(str(v) for v in value)
            if isinstance(value, (int, str)) and not isinstance(value, bool):
                out[key] = parse_range(str(value), f"{where} {key}")
        if "seq" in out and "src_seq" not in out:
            out["src_seq"] = out["seq"]  # recipes: a decoder's source length defaults to the seq range
        return out

    if isinstance(defaults.get("profiles"), (list, tuple)):
        return [one(p, f"model metadata [engine] profiles[{i}]") for i, p in enumerate(defaults["profiles"]) if isinstance(p, Mapping)]
    found = one(defaults, "model metadata [engine]")
    return [found] if found else []


# keys of an [engine] table that are build settings, not axes
_NON_AXIS_KEYS = frozenset({"profiles", "fp16", "policy", "workspace_mib", "opt_level", "timing_cache", "precision"})


def derive_profiles(
    inputs: Sequence[TensorSpec],
    *,
    min_shapes: Sequence[str] = (),
    opt_shapes: Sequence[str] = (),
    max_shapes: Sequence[str] = (),
    profiles: Sequence[str] = (),
    batch: Optional[str] = None,
    seq: Optional[str] = None,
    dims: Sequence[str] = (),
    defaults: Optional[Mapping[str, Any]] = None,
) -> Tuple[List[Profile], str]:
    """The build's profiles and where they came from ("trtexec shapes", "--batch/--seq",
    "--profile", "model metadata", "defaults"), validated against ``inputs``.

    Args:
        inputs: the graph's inputs (from the spec, or the ONNX declarations).
        min_shapes/opt_shapes/max_shapes: trtexec-syntax strings, one per profile.
        profiles: ``"batch=1:8:32,seq=1:128:1024"`` strings, one per profile.
        batch/seq: shorthand ranges ("1:8:32"); ``dims``: more "NAME=MIN:OPT:MAX" items.
            With ``profiles`` they fill axes a profile leaves out.
        defaults: the recipe's [engine] table from the metadata (see engine_defaults).

    Raises:
        UsageError: conflicting or malformed options; ShapeError: an invalid profile.
    """
    extra: Dict[str, Range] = {}
    given: List[Tuple[str, str]] = []  # (axis, option) the user named
    for item in dims:
        for name, rng in parse_dim_assignments(item, "--dim").items():
            if name in ("batch", "seq"):  # --batch/--seq would silently win over it
                raise UsageError(f"--dim {name}: the {name} range has its own option", f"write --{name} MIN:OPT:MAX")
            extra[name] = rng
            given.append((name, "--dim"))
    if batch is not None:
        extra["batch"] = parse_range(batch, "--batch")
        given.append(("batch", "--batch"))
    if seq is not None:
        extra["seq"] = parse_range(seq, "--seq")
        given.append(("seq", "--seq"))
    # One --profile string may serve every graph of a model (decoder_step has src_seq but no seq),
    # so the standard axes a graph lacks are skipped there; any other unknown name is a typo.
    given += [(name, "--profile") for p in profiles for name in parse_dim_assignments(p, "--profile")
              if name not in DYNAMIC_DIMS]
    axes = named_dims(inputs)
    for name, option in given:  # an axis the model does not have would be silently ignored
        if name not in axes:
            raise UsageError(f"{option} {name}: the model's inputs have no dynamic axis {name!r}",
                             f"their dynamic axes: {', '.join(axes) or 'none (every size is fixed)'}")

    if min_shapes or opt_shapes or max_shapes:
        if profiles or extra:
            raise UsageError("--min/--opt/--max-shapes cannot be combined with --profile, --batch, --seq or --dim",
                             "use one way to give the shapes")
        result, origin = profiles_from_trtexec(min_shapes, opt_shapes, max_shapes), "trtexec shapes"
    else:
        meta = _ranges_from_defaults(defaults or {})
        if profiles:
            maps = [{**extra, **parse_dim_assignments(p, "--profile")} for p in profiles]
            origin = "--profile"
        elif extra:
            base = meta[0] if meta else {}
            maps = [{**DEFAULT_RANGES, **base, **extra}]
            origin = "--batch/--seq/--dim"
        elif meta:
            maps = [{**DEFAULT_RANGES, **m} for m in meta]
            origin = "model metadata"
        else:
            maps = [dict(DEFAULT_RANGES)]
            origin = "defaults"
        result = [profile_from_ranges(inputs, m, f" ({origin})") for m in maps]
    validate_profiles(result, inputs)
    return result, origin


# -- validation ---------------------------------------------------------------------------------
def validate_profiles(profiles: Sequence[Profile], inputs: Sequence[TensorSpec]) -> None:
    """Check profiles against the graph's inputs.

    Every input with a dynamic axis appears in every profile with its rank; fixed axes
    keep their size; 1 <= min <= opt <= max on every axis; inputs that share a named axis
    (e.g. "batch") agree on its range.

    Raises:
        ShapeError: naming the profile, input and axis, and what would work.
    """
    if not profiles:
        raise ShapeError("no optimization profile", "give --batch/--seq, --profile or --min/--opt/--max-shapes")
    by_name = {t.name: t for t in inputs}
    dynamic = [t for t in inputs if any(not isinstance(d, int) for d in t.dims)]
    for i, p in enumerate(profiles):
        where = f"profile {i}"
        unknown = sorted(set(p.shapes) - set(by_name))
        if unknown:
            raise ShapeError(f"{where} names unknown input(s) {', '.join(map(repr, unknown))}",
                             f"the model's inputs are {', '.join(by_name)}")
        for t in dynamic:
            if t.name not in p.shapes:
                raise ShapeError(f"{where} gives no shapes for dynamic input {t.name!r} {_dims(t)}",
                                 "every input with a dynamic axis needs min/opt/max shapes")
        shared: Dict[str, Tuple[Range, str]] = {}
        for name, r in p.shapes.items():
            t = by_name[name]
            for label, shape in (("min", r.min), ("opt", r.opt), ("max", r.max)):
                if len(shape) != len(t.dims):
                    raise ShapeError(f"{where}: {label} shape {list(shape)} of {name!r} has rank {len(shape)}, "
                                     f"the input has rank {len(t.dims)} {_dims(t)}")
            for axis, d in enumerate(t.dims):
                lo, mid, hi = r.min[axis], r.opt[axis], r.max[axis]
                if isinstance(d, int) and not (lo == mid == hi == d):
                    raise ShapeError(f"{where}: input {name!r} axis {axis} is fixed at {d} but the profile gives "
                                     f"{lo}:{mid}:{hi}", f"use {d} for that axis")
                if not (1 <= lo <= mid <= hi):
                    raise ShapeError(f"{where}: input {name!r} axis {axis} has min {lo}, opt {mid}, max {hi}",
                                     "need 1 <= min <= opt <= max")
                if isinstance(d, str):
                    if d in shared and shared[d][0] != (lo, mid, hi):
                        (a, b, c), other = shared[d]
                        raise ShapeError(
                            f"{where}: axis {d!r} is {lo}:{mid}:{hi} in input {name!r} but {a}:{b}:{c} in {other!r}",
                            f"give every input the same {d} range",
                        )
                    shared.setdefault(d, ((lo, mid, hi), name))


def select_profile(profiles: Sequence[Profile], shapes: Mapping[str, Sequence[int]]) -> int:
    """Index of the profile that contains ``shapes`` with opt nearest to them.

    Raises:
        ShapeError: no profile contains them; the message lists every profile's ranges.
    """
    fits = [i for i, p in enumerate(profiles) if p.contains(shapes)]
    if not fits:
        given = ", ".join(f"{n} {list(s)}" for n, s in shapes.items())
        raise ShapeError(f"input shapes {given} lie outside every optimization profile of the engine",
                         f"{describe_profiles(profiles)}; rebuild with a wider --batch/--seq or another --profile")
    return min(fits, key=lambda i: (profiles[i].distance(shapes), i))


def _dims(t: TensorSpec) -> str:
    return "[" + ", ".join(str(d) for d in t.dims) + "]"


def inputs_for_onnx(model: Any, spec_inputs: Optional[Iterable[TensorSpec]] = None) -> List[TensorSpec]:
    """The ONNX graph's real inputs, with dims from the spec where it names the same tensor
    (rnndeploy metadata), else from the ONNX declarations (``spec_from_onnx_io``)."""
    from rnndeploy.spec import spec_from_onnx_io

    declared = spec_from_onnx_io(model).graph("model").inputs
    by_spec = {t.name: t for t in (spec_inputs or ())}
    return [by_spec.get(t.name, t) for t in declared]
