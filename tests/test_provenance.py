"""The machine and code record kept with datasets and results."""

import hashlib
import importlib.metadata
import subprocess

import jax
import numpy as np

from s4dm_jax import provenance


def test_machine_record_reads_the_cpu_model_and_hashes_its_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2\n\n"
                    "processor\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2\n")
    record = provenance.machine_record(str(info))
    assert record["cpu_model"] == "AMD EPYC"
    assert record["cpu_flags_sha1"] == hashlib.sha1(b"fpu avx2").hexdigest()[:12]
    assert "cpu_model" not in provenance.machine_record(str(tmp_path / "absent"))


def test_machine_record_names_the_library_versions_that_change_numbers():
    libraries = provenance.machine_record()["libraries"]
    assert libraries["jax"] == jax.__version__ and libraries["numpy"] == np.__version__
    assert libraries["jaxlib"] == importlib.metadata.version("jaxlib")
    assert "not-a-distribution" not in provenance.library_versions(("jax", "not-a-distribution"))


def test_git_commit_is_the_checkout_head():
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=provenance.__file__.rpartition("/")[0])
    commit = provenance.git_commit()
    if head.returncode != 0:  # an installed copy outside a git checkout
        assert commit == "unknown"
    else:
        assert commit.removesuffix("+dirty") == head.stdout.strip()
