"""The one machine probe (rnndeploy.environment): what doctor, results, checkpoints and runners read."""

from __future__ import annotations

import json

from rnndeploy import environment as env


def test_cpu_info_reads_the_first_processor_only(tmp_path):
    text = ("processor\t: 0\nmodel name\t: Test CPU @ 2.0GHz\ncpu MHz\t\t: 1999.5\nflags\t\t: fpu avx2 fma avx512f\n\n"
            "processor\t: 1\nmodel name\t: Another CPU\nflags\t\t: fpu\n")
    (tmp_path / "cpuinfo").write_text(text)
    info = env.cpu_info(str(tmp_path / "cpuinfo"))
    assert info["model name"] == "Test CPU @ 2.0GHz" and info["cpu mhz"] == "1999.5"
    assert info["flags"].split() == ["fpu", "avx2", "fma", "avx512f"]
    assert env.cpu_info(str(tmp_path / "missing")) == {}


def test_versions_come_from_package_metadata():
    import numpy

    assert env.package_version("numpy") == numpy.__version__
    assert env.package_version("no-such-package-xyz", "numpy") == numpy.__version__  # first installed wins
    assert env.package_version("no-such-package-xyz") is None
    versions = env.package_versions(("rnndeploy", "numpy", "no-such-package-xyz"))
    assert versions["numpy"] == numpy.__version__ and versions["no-such-package-xyz"] is None
    assert versions["rnndeploy"] and versions["python"].count(".") == 2


def test_machine_description_is_json_and_agrees_with_the_probes():
    m = env.describe_machine()
    json.dumps(m)  # results carry it as is
    gpus, err = env.probe_gpus()
    assert m["gpus"] == gpus and m["cpu_affinity"] == env.usable_cores() >= 1
    if env.cuda_driver() is None:
        assert gpus == [] and "libcuda" in err and env.cuda_driver_version() is None and m["cuda_driver"] is None
