"""A floor for CPU latency: the fastest a recurrent model could run at (batch, seq) on this CPU.

The model (written down in the README, "The floor"):

- **input projection** — every layer's ``X·Wᵀ`` over all timesteps is one GEMM
  (rows = batch × seq, 2·rows·I·G·H·dirs FLOPs) at the CPU's peak FP32 rate;
- **recurrence** — each of the ``seq`` steps of a layer is sequential: it reads the
  layer's recurrent weights R (G·H·H·dirs floats) once, from the nearest cache level
  that holds them, and does 2·batch·G·H·H·dirs FLOPs; a step takes the longer of the
  two (read at that level's bandwidth, compute at peak);
- **other weights** (heads, attention projections: MatMul/Gemm with a weight
  initializer) — one GEMM each over batch rows, or batch × seq rows when the model
  has a per-step output;
- layers run one after another; nothing else (activations, gate arithmetic, call
  overhead, thread hand-off) is counted: that is what makes it a floor.

**Reduced precision** changes two numbers and nothing else: the bytes a weight takes (FP32 4,
bf16 2, INT8 1) and the compute rate. The rate is the FP32 peak × 2 for bf16 on a core
with native bf16 dot products (AVX-512 BF16 or AMX) and × 4 for INT8 on a core with VNNI
(AVX-512 VNNI, AVX-VNNI or AMX): each 32-bit lane of one instruction does 2 bf16 / 4 INT8
multiply-adds where an FMA does one. Without those instructions the rate stays FP32's.
Each layer and GEMM keeps its own precision — an INT8 variant read from its file (ONNX
Runtime's ``DynamicQuantizeLSTM``, ``MatMulInteger``) has INT8 weights only where the
quantizer put them; ``floor(..., compute="bf16")`` (OpenVINO's bf16 inference) counts every
FP32 weight as bf16.

G is 4 for LSTM, 3 for GRU, 1 for RNN; H the hidden size, I the input size, dirs 1 or
2. The CPU's numbers come from ``probe_cpu``: cores (this process's affinity), clock
(/proc/cpuinfo), and per core the FP32 FLOPs per cycle and the read bytes per cycle of
each cache level from the core's vector datapath (``nominal_rates``):

    core                                   FLOP/cycle   L1   L2   L3  (bytes/cycle)
    Intel with AVX-512 (two 512-bit FMA)       64       128   64   32
    AMD family 25 (Zen 3/4; Zen 4 runs         32        64   32   32
      AVX-512 on 256-bit units)
    AMD family 26+ with AVX-512 (Zen 5)        64       128   64   32
    other AVX2 + FMA                           32        64   64   32
    older                                       8        32   32   16

(two FMA pipes and two loads per cycle of the native vector width; Zen 4's L1/L2 figures
match AIDA64's 2.0 / 1.0 TB/s on a 6-core 7600X). Cache sizes come from sysfs. The
same probe then measures, briefly, what this process achieves: an FP32 GEMM (all cores,
best of 3) and a GEMV ``W·x`` — the recurrent step's own operation — over a matrix that
fills half of each cache level (best of many), and DRAM read bandwidth (a streaming
numpy reduction over 64 MiB, times cores). The floor uses, per number, the **larger**
of the nominal and the measured rate, so a measured kernel never beats its floor; both
are kept in ``CpuModel.measured`` for the report.
``percent_of_floor = floor / median × 100``: 100 % would be the floor itself.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
FLOAT_BYTES = 4
INT8_LSTM = "DynamicQuantizeLSTM"  # ONNX Runtime's INT8 LSTM (W, R int8; W as [dirs, input, 4·hidden])
INT8_MATMUL = ("MatMulInteger", "DynamicQuantizeMatMul")
WEIGHT_BYTES = {"fp32": 4, "bf16": 2, "int8": 1}


@dataclass(frozen=True)
class CacheLevel:
    """One data cache level: ``size`` bytes (per core unless ``shared``) and read bandwidth (bytes/s per core)."""

    level: int
    size: int
    shared: bool
    bytes_per_s: float


@dataclass(frozen=True)
class CpuModel:
    """What the floor assumes about this CPU (see the module docstring for where each number comes from)."""

    cores: int
    ghz: float
    flops_per_cycle: float  # FP32, per core
    caches: Tuple[CacheLevel, ...]
    dram_bytes_per_s: float  # all cores together
    isa: str = ""
    measured: Mapping[str, float] = field(default_factory=dict)  # achieved rates (all cores), see probe_cpu
    bf16_native: bool = False  # AVX-512 BF16 or AMX-BF16 dot products
    int8_vnni: bool = False  # AVX-512 VNNI, AVX-VNNI or AMX-INT8

    def rate(self, weight_bytes: int) -> float:
        """FLOP/s of all cores for weights of this many bytes (module docstring: reduced precision)."""
        if weight_bytes == WEIGHT_BYTES["bf16"] and self.bf16_native:
            return 2.0 * self.peak_flops
        if weight_bytes == WEIGHT_BYTES["int8"] and self.int8_vnni:
            return 4.0 * self.peak_flops
        return self.peak_flops

    @property
    def peak_flops(self) -> float:
        """FP32 FLOP/s of all cores."""
        return self.cores * self.ghz * 1e9 * self.flops_per_cycle

    def read_level(self, nbytes: float) -> Tuple[str, float]:
        """(name, bytes/s over all cores) of the nearest level that holds ``nbytes``."""
        for c in self.caches:
            capacity = c.size if c.shared else c.size * self.cores
            if nbytes <= capacity:
                return f"L{c.level}", c.bytes_per_s * self.cores
        return "DRAM", self.dram_bytes_per_s

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["caches"] = [asdict(c) for c in self.caches]
        d["measured"] = dict(self.measured)
        d["peak_gflops"] = self.peak_flops / 1e9
        return d


@dataclass(frozen=True)
class RecurrentLayer:
    """One LSTM/GRU/RNN node: ``gates`` × ``hidden`` outputs per direction over ``input_size`` features,
    its weights ``weight_bytes`` each (4: FP32, 1: INT8)."""

    name: str
    op: str
    directions: int
    hidden: int
    input_size: int
    weight_bytes: int = FLOAT_BYTES

    @property
    def gates(self) -> int:
        return GATES[self.op]

    @property
    def r_bytes(self) -> int:
        return self.r_bytes_at(self.weight_bytes)

    def r_bytes_at(self, weight_bytes: int) -> int:
        """Bytes of the recurrent weights R with ``weight_bytes`` per weight."""
        return self.directions * self.gates * self.hidden * self.hidden * weight_bytes


@dataclass(frozen=True)
class Floor:
    """The floor at one (batch, seq): seconds in total and by part, and where R was read from."""

    batch: int
    seq: int
    seconds: float
    parts: Mapping[str, float] = field(default_factory=dict)
    weights_from: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {"batch": self.batch, "seq": self.seq, "seconds": self.seconds, "parts": dict(self.parts),
                "weights_from": dict(self.weights_from)}


@dataclass(frozen=True)
class ModelShape:
    """What the floor needs from an ONNX graph: its recurrent layers and other weight GEMMs
    (K, N, bytes per weight)."""

    layers: Tuple[RecurrentLayer, ...]
    gemms: Tuple[Tuple[int, int, int], ...]
    per_step_output: bool

    def floor(self, batch: int, seq: int, cpu: CpuModel, compute: str = "fp32") -> Floor:
        """The floor at (batch, seq); ``compute="bf16"``: the runtime computes in bf16, so every
        FP32 weight is read and multiplied as bf16 (module docstring: reduced precision)."""
        if compute not in WEIGHT_BYTES:
            raise ValueError(f"compute must be one of {', '.join(WEIGHT_BYTES)}, not {compute!r}")

        def nbytes(weight_bytes: int) -> int:
            return min(weight_bytes, WEIGHT_BYTES[compute])

        proj = rec = other = 0.0
        where: Dict[str, str] = {}
        for layer in self.layers:
            wb = nbytes(layer.weight_bytes)
            peak = cpu.rate(wb)
            g_h = layer.gates * layer.hidden * layer.directions
            proj += 2.0 * batch * seq * layer.input_size * g_h / peak
            r_bytes = layer.r_bytes_at(wb)
            level, bw = cpu.read_level(r_bytes)
            where[layer.name] = level
            step = max(r_bytes / bw, 2.0 * batch * g_h * layer.hidden / peak)
            rec += seq * step
        rows = batch * seq if self.per_step_output else batch
        for k, n, weight_bytes in self.gemms:
            wb = nbytes(weight_bytes)
            _, bw = cpu.read_level(k * n * wb)
            other += max(2.0 * rows * k * n / cpu.rate(wb), k * n * wb / bw)
        return Floor(batch, seq, proj + rec + other,
                     {"input_projection": proj, "recurrence": rec, "other_gemms": other}, where)


def model_shape(model: Any) -> ModelShape:
    """Recurrent layers and weight GEMMs of an ``onnx.ModelProto`` (main graph), FP32 or INT8
    (ONNX Runtime's quantized ops, see the module docstring)."""
    from rnndeploy.onnx_info import node_attr

    inits = {i.name: i for i in model.graph.initializer}
    layers: List[RecurrentLayer] = []
    gemms: List[Tuple[int, int, int]] = []
    for i, n in enumerate(model.graph.node):
        name = n.name or f"{n.op_type}_{i}"
        if n.op_type in GATES or n.op_type == INT8_LSTM:
            int8 = n.op_type == INT8_LSTM
            hidden = int(node_attr(n, "hidden_size", 0) or 0)
            w = inits.get(n.input[1]) if len(n.input) > 1 else None
            dirs = 2 if node_attr(n, "direction") in ("bidirectional", b"bidirectional") else 1
            in_size = int(w.dims[1 if int8 else 2]) if w is not None and len(w.dims) == 3 else hidden
            layers.append(RecurrentLayer(name, "LSTM" if int8 else n.op_type, dirs, hidden, in_size,
                                         WEIGHT_BYTES["int8"] if int8 else FLOAT_BYTES))
        elif n.op_type in ("MatMul", "Gemm") + INT8_MATMUL and len(n.input) > 1 and n.input[1] in inits:
            dims = list(inits[n.input[1]].dims)
            if len(dims) == 2:
                trans_b = n.op_type == "Gemm" and node_attr(n, "transB")
                k, cols = (dims[1], dims[0]) if trans_b else (dims[0], dims[1])
                gemms.append((k, cols, WEIGHT_BYTES["int8"] if n.op_type in INT8_MATMUL else FLOAT_BYTES))
        elif n.op_type == "Gather" and n.input and n.input[0] in inits:
            continue  # an embedding lookup reads batch × seq rows: negligible
    heads = _head_outputs(model)
    per_step = any("seq" in [d.dim_param for d in o.type.tensor_type.shape.dim]
                   for o in model.graph.output if heads is None or o.name in heads)
    return ModelShape(tuple(layers), tuple(gemms), per_step)


def _head_outputs(model: Any) -> Optional[set]:
    """Names of the prediction / logits / probs outputs per the rnndeploy spec (None without one)."""
    from rnndeploy.errors import SpecError
    from rnndeploy.spec import read_onnx_metadata

    try:
        spec, graph, _ = read_onnx_metadata(model)
    except SpecError:
        return None
    return {t.name for t in spec.graph(graph).outputs if t.role in ("prediction", "logits", "probs")}


def probe_cpu(cores: Optional[int] = None, measure: bool = True) -> CpuModel:
    """This machine's CpuModel (see the module docstring); ``cores`` defaults to the affinity mask.
    ``measure=False`` skips the ~0.1-0.3 s of measurements (nominal rates only; DRAM 10 GB/s per core)."""
    from rnndeploy.environment import usable_cores

    n = cores or usable_cores()
    info = _cpuinfo()
    isa, fpc, per_level = nominal_rates(info["vendor"], info["family"], info["flags"])
    ghz = (info["mhz"] or 2000.0) / 1000.0
    levels = _caches()
    measured = measure_rates(levels, n) if measure else {}
    peak = n * ghz * 1e9 * fpc
    if measured.get("gemm_flops", 0.0) > peak:  # never let the floor be beaten by a measured GEMM
        fpc = measured["gemm_flops"] / (n * ghz * 1e9)
    caches = []
    for level, size, shared in levels:
        nominal = per_level.get(level, 16.0) * ghz * 1e9
        caches.append(CacheLevel(level, size, shared, max(nominal, measured.get(f"L{level}", 0.0) / n)))
    dram = measured.get("DRAM", 10e9 * n)
    flags = info["flags"]
    return CpuModel(n, ghz, fpc, tuple(caches), dram, isa, measured,
                    bf16_native=bool(flags & {"avx512_bf16", "amx_bf16"}),
                    int8_vnni=bool(flags & {"avx512_vnni", "avx512vnni", "avx_vnni", "amx_int8"}))


def nominal_rates(vendor: str, family: Optional[int], flags: Any) -> Tuple[str, float, Dict[int, float]]:
    """(ISA label, FP32 FLOPs per cycle per core, {cache level: read bytes per cycle per core})
    from the core's vector datapath (table in the module docstring)."""
    amd = vendor == "AuthenticAMD"
    if "avx512f" in flags and amd and (family or 0) < 26:
        return f"avx512 on 256-bit units, AMD family {family}", 32.0, {1: 64.0, 2: 32.0, 3: 32.0}
    if "avx512f" in flags:
        return "avx512", 64.0, {1: 128.0, 2: 64.0, 3: 32.0}
    if "avx2" in flags and "fma" in flags:
        return ("avx2+fma", 32.0, {1: 64.0, 2: 32.0, 3: 32.0} if amd else {1: 64.0, 2: 64.0, 3: 32.0})
    return "sse", 8.0, {1: 32.0, 2: 32.0, 3: 16.0}


def measure_rates(levels: List[Tuple[int, int, bool]], cores: int) -> Dict[str, float]:
    """What this process achieves now, all cores together: ``gemm_flops`` (FP32 GEMM 512³, best of 3),
    ``L1``/``L2``/``L3`` (bytes/s of numpy's GEMV over a matrix filling half of one core's share
    of the level, best of many calls; the BLAS may spread a large one over threads, so it is
    not scaled) and ``DRAM`` (see ``_dram_bandwidth``: one core's streaming read, times cores).
    Call overhead is included: each figure is a rate reached, a lower bound of what the
    hardware can do, which is why the floor takes the larger of it and the nominal rate."""
    out: Dict[str, float] = {}
    a = np.ones((512, 512), dtype=np.float32)
    out["gemm_flops"] = 2.0 * 512**3 / _best(lambda: a @ a, 3)
    for level, size, shared in levels:
        share = size // cores if shared else size
        cols = 256
        rows = max(1, share // 2 // (cols * FLOAT_BYTES))
        w, x = np.ones((rows, cols), dtype=np.float32), np.ones(cols, dtype=np.float32)
        calls = int(min(200, max(3, (1 << 21) // w.nbytes)))
        out[f"L{level}"] = w.nbytes / _best(lambda w=w, x=x: w @ x, calls)  # BLAS may thread it: not × cores
    out["DRAM"] = _dram_bandwidth() * cores
    return out


def _best(fn: Any, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return max(best, 1e-9)


def _cpuinfo() -> Dict[str, Any]:
    """flags, MHz, vendor and family of the first CPU (``environment.cpu_info``, typed)."""
    from rnndeploy.environment import cpu_info

    raw = cpu_info()

    def number(key: str, kind: Any) -> Any:
        try:
            return kind(raw[key])
        except (KeyError, ValueError):
            return None

    return {"flags": set(raw.get("flags", "").split()), "mhz": number("cpu mhz", float),
            "vendor": raw.get("vendor_id", ""), "family": number("cpu family", int)}


def _caches() -> List[Tuple[int, int, bool]]:
    """(level, bytes, shared by several cores) of each data/unified cache of cpu0, from sysfs."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    out = []
    try:
        entries = sorted(e for e in os.listdir(base) if e.startswith("index"))
    except OSError:
        entries = []
    for e in entries:
        try:
            with open(f"{base}/{e}/type") as f:
                kind = f.read().strip()
            with open(f"{base}/{e}/level") as f:
                level = int(f.read())
            with open(f"{base}/{e}/size") as f:
                size = _parse_size(f.read().strip())
            try:
                with open(f"{base}/{e}/shared_cpu_list") as f:
                    cpus = f.read()
                shared = "," in cpus or "-" in cpus
            except OSError:
                shared = level >= 3
        except (OSError, ValueError):
            continue
        if kind in ("Data", "Unified"):
            out.append((level, size, shared))
    if not out:  # no sysfs (containers, macOS): typical sizes
        out = [(1, 32 * 1024, False), (2, 1024 * 1024, False), (3, 32 * 1024 * 1024, True)]
    return sorted(out)


def _parse_size(text: str) -> int:
    mult = {"K": 1024, "M": 1024**2, "G": 1024**3}
    return int(text[:-1]) * mult[text[-1].upper()] if text and text[-1].upper() in mult else int(text)


def _dram_bandwidth() -> float:
    """Single-core streaming read rate (bytes/s): the best of 3 reductions over a 64 MiB array."""
    buf = np.ones(16 * 1024 * 1024, dtype=np.float32)
    return buf.nbytes / _best(lambda: np.add.reduce(buf), 3)
