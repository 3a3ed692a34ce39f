"""Results JSON (schema, merge), Markdown, inline-SVG charts, and the HTML page rendered in a real
headless chromium."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rnndeploy.backends import Runner, create_runner
from rnndeploy.bench.measurement import Measurement
from rnndeploy.bench.results import BenchResult
from rnndeploy.cli import cli
from rnndeploy.environment import describe_machine
from rnndeploy.errors import UsageError
from rnndeploy.parity.harness import ParityConfig, run_parity
from rnndeploy.report import render_markdown
from rnndeploy.report.html import render_html
from rnndeploy.report.schema import load_results, merge, read_document, to_document, write_results
from rnndeploy.report.svg import PALETTE, Series, line_chart, linear_ticks, log_ticks
from rnndeploy.spec import GraphSpec, ModelSpec, TensorSpec

TORCH_RGB = (0x1F, 0x77, 0xB4)  # PALETTE[0]: torch
ORT_RGB = (0xD6, 0x27, 0x28)  # PALETTE[1]: ort-cpu


def bench_result(machine_name="cpu-box", gpu=None) -> BenchResult:
    ms = []
    for seq in (16, 128, 512):
        for batch in (1, 32):
            base = 1e-4 * seq * (1 + batch / 8)
            ms.append(Measurement("torch", {"batch": batch, "seq": seq}, tuple(base * (1 + 0.01 * i) for i in range(8)),
                                  description={"backend": "torch", "device": "cpu", "precision": "fp32", "threads": 2}))
            ms.append(Measurement("ort-cpu", {"batch": batch, "seq": seq}, tuple(0.45 * base * (1 + 0.01 * i) for i in range(8)),
                                  description={"backend": "ort-cpu", "device": "cpu", "precision": "fp32", "threads": 2}))
    machine = dict(describe_machine(), hostname=machine_name, gpus=gpu or [])
    return BenchResult({"name": "sine-lstm", "graph": "model"}, tuple(ms), "torch",
                       {"warmup": 5, "iters": 8, "min_time": None}, (), machine, "rnndeploy bench ...", "2026-01-01T00:00:00+00:00")


class Drifting(Runner):
    """ort-cpu plus an error that grows along the sequence: an FP16-like drift curve."""

    backend = "drift"

    def __init__(self, source, options=None):
        super().__init__(source, options)
        self.inner = create_runner("ort-cpu", source, options)

    def _activate_impl(self):
        self.inner.activate()

    def _deactivate_impl(self):
        self.inner.deactivate()

    def _infer_impl(self, feed):
        out = self.inner.infer(feed)
        y = out["y"]
        out["y"] = y + 1e-6 * np.arange(1, y.shape[1] + 1, dtype=np.float32)[None, :, None]
        return out


@pytest.fixture(scope="module")
def parity_result():
    pytest.importorskip("onnxruntime")
    import onnx

    from rnndeploy.spec import write_onnx_metadata

    root = Path(__file__).resolve().parent / "data" / "foreign"
    model = onnx.load(root / "gru_seq.onnx")
    g = GraphSpec("model", (TensorSpec("x", "float32", ("batch", "seq", 4), "features", time_axis=1),),
                  (TensorSpec("y", "float32", ("batch", "seq", 8), "prediction", time_axis=1),
                   TensorSpec("h", "float32", (1, "batch", 8), "state")))
    write_onnx_metadata(model, ModelSpec("tiny-gru", "regressor", {"model": g}), "model", {})
    import tempfile

    d = Path(tempfile.mkdtemp())
    onnx.save(model, d / "m.onnx")
    from rnndeploy.backends.source import resolve_source

    src = resolve_source(str(d / "m.onnx"))
    cfg = ParityConfig(backends=("drift",), reference="ort-cpu", shapes=((1, 8), (2, 64), (1, 200)), show_progress=False)
    res = run_parity(src, cfg, "rnndeploy parity m.onnx ...",
                     runner_factory=lambda n, s, o: Drifting(s, o) if n == "drift" else create_runner(n, s, o))
    shutil.rmtree(d)
    return res


# -- JSON -------------------------------------------------------------------------------------------
def test_results_document_round_trip_and_merge(tmp_path, parity_result):
    a, b = tmp_path / "cpu.json", tmp_path / "gpu.json"
    write_results(str(a), [parity_result, bench_result()])
    write_results(str(b), [bench_result("gpu-box", [{"index": 0, "name": "NVIDIA H100", "compute_capability": "9.0"}])])
    doc = read_document(a)
    assert doc["format"] == "rnndeploy.results" and doc["schema_version"] == 1
    assert [r["kind"] for r in doc["results"]] == ["parity", "bench"]
    merged = merge([a, b, a])  # the repeated file adds nothing
    assert len(merged["results"]) == 3
    results = load_results(merged)
    assert results[0].kind == "parity" and results[0].failures() == parity_result.failures()
    assert results[2].machine["hostname"] == "gpu-box"
    assert results[1].ratio("ort-cpu", 32, 512) == pytest.approx(0.45, rel=1e-3)  # times kept to 4 digits


def test_results_reader_refuses_other_files(tmp_path):
    p = tmp_path / "x.json"
    for content in ("{", json.dumps({"format": "other"}), json.dumps({"format": "rnndeploy.results", "schema_version": 99,
                                                                       "results": []})):
        p.write_text(content)
        with pytest.raises(UsageError):
            read_document(p)
    with pytest.raises(UsageError):
        read_document(tmp_path / "missing.json")
    p.write_bytes(b"\x08\x01\x12\xda\xff binary, e.g. an .onnx file given by mistake")
    with pytest.raises(UsageError, match="not valid JSON"):
        read_document(p)
    with pytest.raises(ValueError):
        to_document([{"kind": "mystery"}])


# -- Markdown and SVG ---------------------------------------------------------------------------------
def test_markdown_tables(parity_result):
    md = render_markdown([parity_result, bench_result()])
    assert "## Parity: tiny-gru" in md and "## Latency: sine-lstm" in md
    assert "| drift | b2-s64 | y |" in md
    assert re.search(r"\| ort-cpu \| 32 \| 512 \| [\d.]+ \|.*\| 0\.45× \|", md)
    assert "## Machines" in md and "cpu-box" not in md.split("## Machines")[0]


def test_svg_ticks_and_chart():
    assert linear_ticks(0, 10) == [0, 2, 4, 6, 8, 10]
    assert log_ticks(3e-7, 2e-4)[:2] == [1e-7, 1e-6] and log_ticks(3e-7, 2e-4)[-1] == 1e-3
    svg = line_chart([Series("torch", (1.0, 2.0, 4.0), (1.0, 2.0, 3.0), PALETTE[0]),
                      Series("bad", (1.0, 2.0), (float("nan"), -1.0), PALETTE[1])],
                     "t <&>", "x", "y", log_y=True, chart_id="c1")
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "t &lt;&amp;&gt;" in svg  # escaped
    assert svg.count('class="series"') == 1  # the all-invalid series draws nothing
    assert svg.count("<circle") == 3
    assert "no data" in line_chart([], "empty", "x", "y")


def test_html_is_self_contained(parity_result, tmp_path):
    page = render_html([parity_result, bench_result()], "Report")
    assert page.count("<svg") >= 4
    # nothing fetched from anywhere: only the SVG namespace URI may appear
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    assert urls <= {"http://www.w3.org/2000/svg"}
    assert not re.search(r"<(link|img|iframe)\b", page) and "src=" not in page
    assert "error vs timestep" in page and "Latency vs sequence length, batch 32" in page


# -- the page in a real browser ----------------------------------------------------------------------------
def _chromium() -> str:
    return shutil.which("chromium") or shutil.which("chromium-browser") or ""


def _browser(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / ('profile-' + str(len(list(tmp_path.iterdir()))))}"]
    return subprocess.run([_chromium(), *flags, *args], capture_output=True, text=False, timeout=120)


def _png_pixels(path: Path) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what chromium writes) into [h, w, c] uint8."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)]
        if f == 0:
            cur = bytearray(line)
        elif f == 2:
            up = np.frombuffer(line, np.uint8).astype(np.int32) + np.frombuffer(bytes(prev), np.uint8)
            cur = bytearray((up & 255).astype(np.uint8).tobytes())
        else:  # 1 Sub, 3 Average, 4 Paeth depend on the left neighbour: byte by byte on Python ints
            cur = bytearray(stride)
            for i in range(stride):
                a = cur[i - channels] if i >= channels else 0
                b = prev[i]
                if f == 1:
                    pred = a
                elif f == 3:
                    pred = (a + b) >> 1
                else:
                    c = prev[i - channels] if i >= channels else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[i] = (line[i] + pred) & 255
        rows.append(bytes(cur))
        prev = cur
    out = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(height, stride)
    return out.reshape(height, width, channels)[:, :, :3].astype(np.uint8)


@pytest.mark.browser
def test_html_renders_plots_and_tables_in_chromium(parity_result, tmp_path):
    pages = tmp_path / "pages"
    pages.mkdir()
    json_a, json_b = pages / "parity.json", pages / "bench.json"
    write_results(str(json_a), [parity_result])
    write_results(str(json_b), [bench_result()])
    html = pages / "report.html"
    res = CliRunner().invoke(cli, ["report", str(json_a), str(json_b), "-o", str(html), "--markdown", str(pages / "r.md")])
    assert res.exit_code == 0, res.output
    url = html.resolve().as_uri()

    dom = _browser(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout.decode()
    n_svg = text.count("<svg")
    assert n_svg >= 4
    assert f'data-ready="{n_svg}"' in text  # the page's script ran and counted the charts it found
    assert len(re.findall(r'<li><a href="#', text)) >= 4  # table of contents built by the script
    assert text.count('class="series"') >= 4 and "<table>" in text

    shot = tmp_path / "shot.png"
    # half device scale: the whole page in a quarter of the pixels keeps the decoding below cheap
    run = _browser(tmp_path, "--hide-scrollbars", "--window-size=1200,2600", "--force-device-scale-factor=0.5",
                   f"--screenshot={shot}", url)
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    px = _png_pixels(shot)
    assert px.shape[0] >= 1000 and px.shape[1] >= 500
    assert len(np.unique(px.reshape(-1, 3), axis=0)) > 50  # not blank

    def count(rgb):
        return int(np.sum(np.all(np.abs(px.astype(int) - np.array(rgb)) <= 30, axis=-1)))

    # only the series lines, markers and legend swatches use these colours; text is grey/black
    assert count(TORCH_RGB) > 60  # the torch latency lines were drawn
    assert count(ORT_RGB) > 60  # and the ort-cpu ones



def test_report_cli_in_a_subprocess(tmp_path, parity_result):
    from tests.helpers import run_cli

    a, b = tmp_path / "cpu.json", tmp_path / "gpu.json"
    write_results(str(a), [parity_result])
    write_results(str(b), [bench_result("gpu-box")])
    proc = run_cli("report", str(a), str(b), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Parity: tiny-gru" in proc.stdout and "Latency: sine-lstm" in proc.stdout
    proc = run_cli("report", str(a), str(b), "--json", str(tmp_path / "all.json"), "-o", str(tmp_path / "r.html"),
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(read_document(tmp_path / "all.json")["results"]) == 2
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    proc = run_cli("report", str(tmp_path / "missing.json"), cwd=tmp_path)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    proc = run_cli("report", str(a), "-o", str(tmp_path / "no" / "r.html"), cwd=tmp_path)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
