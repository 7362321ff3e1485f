"""The native record path's options: the GPUFL_NATIVE_* variables keep their meanings (as the C side read
them with getenv before they became config.NativeOptions), and reach _native.start as keywords."""

from __future__ import annotations

import pytest

from gpufl.client.config import NativeOptions, Options


def test_defaults_start_what_the_c_side_started_without_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for var, _ in NativeOptions._ENV.values():
        monkeypatch.delenv(var, raising=False)
    opts = Options.resolve(app_name="t")
    assert opts.native == NativeOptions()
    assert opts.native.start_kwargs() == {
        "subscribe": True, "callbacks": True, "runtime": False, "driver": True, "activity": True,
        "nvtx": True, "serial_kernels": False, "copies": True, "discard": False, "host_pinned": False,
        "device_buffer_mb": 0, "dump_dir": None,
    }  # fmt: skip
    assert "native" not in opts.as_record()  # session_start's options stay as they were


def test_variables_keep_their_meanings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "GPUFL_NATIVE": "off",
        "GPUFL_NATIVE_FLUSH_MS": "0",
        "GPUFL_NATIVE_SUBSCRIBE": "0",
        "GPUFL_NATIVE_CALLBACKS": "0x",  # off: the C side tested the first character
        "GPUFL_NATIVE_DOMAINS": "runtime,driver",
        "GPUFL_NATIVE_ACTIVITY": "1",
        "GPUFL_NATIVE_NVTX": "0",
        "GPUFL_NATIVE_KERNEL_KIND": "serial",
        "GPUFL_NATIVE_COPIES": "0",
        "GPUFL_NATIVE_DISCARD": "1",
        "GPUFL_NATIVE_HOST_PINNED": "1",
        "GPUFL_NATIVE_DEVICE_BUFFER_MB": "32MB",  # atoi
        "GPUFL_NATIVE_DUMP_DIR": "/tmp/d",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    opts = Options.resolve(app_name="t")
    n = opts.native
    assert not n.enabled and n.flush_ms == 0
    assert n.start_kwargs() == {
        "subscribe": False, "callbacks": False, "runtime": True, "driver": True, "activity": True,
        "nvtx": False, "serial_kernels": True, "copies": False, "discard": True, "host_pinned": True,
        "device_buffer_mb": 32, "dump_dir": "/tmp/d",
    }  # fmt: skip
    assert opts.as_record()["native"]["discard"] is True  # a diagnostic run says so in session_start


def test_an_explicit_argument_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUFL_NATIVE_COPIES", "0")
    opts = Options.resolve(app_name="t", native={"discard": True})
    assert opts.native.discard and not opts.native.copies
