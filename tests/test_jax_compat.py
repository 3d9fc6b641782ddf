"""The jaxlib 0.11.x XLA:CPU FFT deadlock work-around (s4dm_jax/_jax_compat.py)."""

import importlib.metadata
import os
import subprocess
import sys

import pytest

from s4dm_jax import _jax_compat
from s4dm_jax._jax_compat import FFT_DEADLOCK_FLAG, apply_fft_deadlock_workaround

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("version, affected", [("0.11.0", True), ("0.11.2", True),
                                               ("0.10.2", False), ("0.12.0", False),
                                               ("0.1.1", False)])
def test_only_jaxlib_0_11_is_affected(version, affected):
    assert _jax_compat.has_fft_deadlock(version) is affected


def fake_jaxlib(monkeypatch, version, backends_started=False):
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: version if name == "jaxlib" else real(name))
    monkeypatch.setattr(_jax_compat, "_backends_started", lambda: backends_started)


def test_the_flag_is_added_on_0_11_and_kept_with_other_flags(monkeypatch):
    fake_jaxlib(monkeypatch, "0.11.2")
    environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    assert apply_fft_deadlock_workaround(environ) is True
    assert environ["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 {FFT_DEADLOCK_FLAG}"
    empty = {}
    apply_fft_deadlock_workaround(empty)
    assert empty == {"XLA_FLAGS": FFT_DEADLOCK_FLAG}


def test_a_workaround_after_jax_started_warns_that_it_came_too_late(monkeypatch):
    fake_jaxlib(monkeypatch, "0.11.2", backends_started=True)
    with pytest.warns(UserWarning, match="cannot take effect in this process"):
        assert apply_fft_deadlock_workaround({}) is True


def test_other_releases_and_a_users_own_setting_are_left_alone(monkeypatch):
    fake_jaxlib(monkeypatch, "0.12.0")
    environ = {}
    assert apply_fft_deadlock_workaround(environ) is False and environ == {}
    fake_jaxlib(monkeypatch, "0.11.2")
    environ = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=true"}
    assert apply_fft_deadlock_workaround(environ) is False
    assert environ == {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=true"}


@pytest.mark.skipif(not _jax_compat.has_fft_deadlock(importlib.metadata.version("jaxlib")),
                    reason="the deadlock is specific to jaxlib 0.11.x (CI's Python 3.12 leg "
                           "installs jax 0.11.2 to run this)")
def test_the_reproducer_finishes_with_the_workaround():
    """Regression test: the reproducer never returns on jaxlib 0.11.2 without the work-around
    (its watchdog exits with status 3); with it, every call returns."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "experiments", "jax_fft_deadlock.py"), "--calls", "2",
         "--timeout", "300"], capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert FFT_DEADLOCK_FLAG in result.stdout and result.stdout.strip().endswith("ok")
