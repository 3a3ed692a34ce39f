"""Run one dynamo ONNX export in a fresh process (see exporters.export_dynamo_subprocess).

Usage: python -m rnndeploy.export.dynamo_worker REQUEST.json
Prints one JSON line: {"ok": true} or {"ok": false, "error": "..."}; the ONNX file
is written to the request's "out" path with all weights inside it.
"""

from __future__ import annotations

import json
import sys

from rnndeploy.errors import first_line


def main(argv: list) -> int:
    with open(argv[0]) as f:
        request = json.load(f)
    try:
        import numpy as np
        import onnx

        from rnndeploy.export.exporters import export_dynamo_in_process
        from rnndeploy.export.sources import build_from_source
        from rnndeploy.spec import GraphSpec

        module = build_from_source(request["source"])
        graph = GraphSpec.from_dict(request["graph"])
        with np.load(request["example"], allow_pickle=False) as z:
            example = {k: z[k] for k in z.files}
        model = export_dynamo_in_process(module, graph, example, int(request["opset"]))
        onnx.save(model, request["out"])
    except Exception as exc:  # reported to the parent as one line
        print(json.dumps({"ok": False, "error": first_line(exc, 400)}))
        return 0
    print(json.dumps({"ok": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
