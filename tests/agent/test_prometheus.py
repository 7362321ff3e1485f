"""The agent's GPU metrics (#29) end to end: real agents ship real captures (examples/captures) to the
real backend, and a real Prometheus (Debian's package) scrapes their /metrics on loopback and evaluates
the example alert rules; the Grafana dashboard's queries run against it too.

Expected values are computed here from the captures' last samples with this file's own table of names
and units, not with the agent's (src/gpufl/agent/gpumetrics.py), so a wrong name, unit or label there
fails here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from gpufl.contract import events as ev

from .conftest import agent_args, require
from .services import Backend, backend_available, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CAPTURES = os.path.join(ROOT, "examples", "captures")


def _capture_names() -> list[str]:
    """The captures fed to the stack: one per (host, app), the first by folder name. Several captures are
    runs of one app on one host and GPU (diff_*, gpt_train; memcpy_heavy*; sync_stall*), whose series would
    overwrite one another's last sample."""
    seen: set[tuple[str, str]] = set()
    out = []
    for name in sorted(os.listdir(CAPTURES)):
        (system,) = [f for f in os.listdir(os.path.join(CAPTURES, name)) if ".system." in f]
        with open(os.path.join(CAPTURES, name, system), "rb") as f:
            start = ev.decode(f.readline())
            sampled = any(b'"system_sample"' in line for line in f)
        assert isinstance(start, ev.SessionStart)
        if not sampled:  # a run shorter than the sampling interval (deep_truth): nothing to export
            continue
        if (start.host, start.app) not in seen:
            seen.add((start.host, start.app))
            out.append(name)
    return out


RULES = os.path.join(ROOT, "deploy", "prometheus", "gpufl-alerts.yml")
RULE_TESTS = os.path.join(ROOT, "deploy", "prometheus", "gpufl-alerts.test.yml")
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "gpufl-dashboard.json")
BUILDER = os.path.join(ROOT, "deploy", "grafana", "build_dashboard.py")
MIB = 1024 * 1024

# GpuSample field -> (gpufl name, factor to base units, dcgm-exporter name or None, factor to its unit).
GPU_EXPECTED: dict[str, tuple[str, float, str | None, float]] = {
    "util_gpu_pct": ("gpufl_gpu_utilization_ratio", 1 / 100, "DCGM_FI_DEV_GPU_UTIL", 1),
    "util_mem_pct": ("gpufl_gpu_memory_utilization_ratio", 1 / 100, "DCGM_FI_DEV_MEM_COPY_UTIL", 1),
    "mem_used_mib": ("gpufl_gpu_memory_used_bytes", MIB, "DCGM_FI_DEV_FB_USED", 1),
    "mem_free_mib": ("gpufl_gpu_memory_free_bytes", MIB, "DCGM_FI_DEV_FB_FREE", 1),
    "mem_total_mib": ("gpufl_gpu_memory_total_bytes", MIB, "DCGM_FI_DEV_FB_TOTAL", 1),
    "temp_c": ("gpufl_gpu_temperature_celsius", 1, "DCGM_FI_DEV_GPU_TEMP", 1),
    "power_mw": ("gpufl_gpu_power_watts", 1 / 1000, "DCGM_FI_DEV_POWER_USAGE", 1 / 1000),
    "energy_mj": ("gpufl_gpu_energy_joules_total", 1 / 1000, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 1),
    "fan_pct": ("gpufl_gpu_fan_speed_ratio", 1 / 100, "DCGM_FI_DEV_FAN_SPEED", 1),
    "clk_gfx_mhz": ("gpufl_gpu_clock_graphics_hertz", 1e6, None, 1),
    "clk_sm_mhz": ("gpufl_gpu_clock_sm_hertz", 1e6, "DCGM_FI_DEV_SM_CLOCK", 1),
    "clk_mem_mhz": ("gpufl_gpu_clock_memory_hertz", 1e6, "DCGM_FI_DEV_MEM_CLOCK", 1),
    "throttle_reasons": ("gpufl_gpu_clocks_event_reasons", 1, "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", 1),
    "throttle_pwr": ("gpufl_gpu_throttle_power", 1, None, 1),
    "throttle_therm": ("gpufl_gpu_throttle_thermal", 1, None, 1),
    "pcie_rx_kbs": ("gpufl_gpu_pcie_rx_bytes_per_second", 1024, "DCGM_FI_DEV_PCIE_RX_THROUGHPUT", 1),
    "pcie_tx_kbs": ("gpufl_gpu_pcie_tx_bytes_per_second", 1024, "DCGM_FI_DEV_PCIE_TX_THROUGHPUT", 1),
    # NVML GPM (contract v4): ratios as dcgm-exporter's profiling fields, links in bytes/s
    "gr_engine_active_pct": (
        "gpufl_gpu_graphics_engine_active_ratio",
        1 / 100,
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
        1 / 100,
    ),
    "sm_active_pct": ("gpufl_gpu_sm_active_ratio", 1 / 100, "DCGM_FI_PROF_SM_ACTIVE", 1 / 100),
    "sm_occupancy_pct": ("gpufl_gpu_sm_occupancy_ratio", 1 / 100, "DCGM_FI_PROF_SM_OCCUPANCY", 1 / 100),
    "tensor_active_pct": (
        "gpufl_gpu_tensor_active_ratio",
        1 / 100,
        "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
        1 / 100,
    ),
    "tensor_hmma_active_pct": (
        "gpufl_gpu_tensor_hmma_active_ratio",
        1 / 100,
        "DCGM_FI_PROF_PIPE_TENSOR_HMMA_ACTIVE",
        1 / 100,
    ),
    "tensor_imma_active_pct": (
        "gpufl_gpu_tensor_imma_active_ratio",
        1 / 100,
        "DCGM_FI_PROF_PIPE_TENSOR_IMMA_ACTIVE",
        1 / 100,
    ),
    "tensor_dfma_active_pct": (
        "gpufl_gpu_tensor_dfma_active_ratio",
        1 / 100,
        "DCGM_FI_PROF_PIPE_TENSOR_DFMA_ACTIVE",
        1 / 100,
    ),
    "fp64_active_pct": ("gpufl_gpu_fp64_active_ratio", 1 / 100, "DCGM_FI_PROF_PIPE_FP64_ACTIVE", 1 / 100),
    "fp32_active_pct": ("gpufl_gpu_fp32_active_ratio", 1 / 100, "DCGM_FI_PROF_PIPE_FP32_ACTIVE", 1 / 100),
    "fp16_active_pct": ("gpufl_gpu_fp16_active_ratio", 1 / 100, "DCGM_FI_PROF_PIPE_FP16_ACTIVE", 1 / 100),
    "int_active_pct": ("gpufl_gpu_integer_active_ratio", 1 / 100, "DCGM_FI_PROF_PIPE_INT_ACTIVE", 1 / 100),
    "dram_bw_pct": ("gpufl_gpu_dram_bandwidth_ratio", 1 / 100, "DCGM_FI_PROF_DRAM_ACTIVE", 1 / 100),
    "pcie_rx_mibs": ("gpufl_gpu_pcie_rx_mean_bytes_per_second", MIB, "DCGM_FI_PROF_PCIE_RX_BYTES", MIB),
    "pcie_tx_mibs": ("gpufl_gpu_pcie_tx_mean_bytes_per_second", MIB, "DCGM_FI_PROF_PCIE_TX_BYTES", MIB),
    "nvlink_rx_mibs": ("gpufl_gpu_nvlink_rx_bytes_per_second", MIB, "DCGM_FI_PROF_NVLINK_RX_BYTES", MIB),
    "nvlink_tx_mibs": ("gpufl_gpu_nvlink_tx_bytes_per_second", MIB, "DCGM_FI_PROF_NVLINK_TX_BYTES", MIB),
}
HOST_EXPECTED: dict[str, tuple[str, float]] = {
    "cpu_pct": ("gpufl_host_cpu_utilization_ratio", 1 / 100),
    "ram_used_mib": ("gpufl_host_memory_used_bytes", MIB),
    "ram_total_mib": ("gpufl_host_memory_total_bytes", MIB),
    "proc_rss_mib": ("gpufl_app_resident_memory_bytes", MIB),
}
GPUFL_SERIES = r"gpufl_(gpu|host|app|system|sessions)_.*"


def _prometheus() -> tuple[str, str] | None:
    prom, tool = shutil.which("prometheus"), shutil.which("promtool")
    return (prom, tool) if prom and tool else None


@dataclass
class Capture:
    host: str
    app: str
    job_id: str
    devices: dict[int, ev.DeviceProperties]
    last: ev.SystemSample


def _captures() -> list[Capture]:
    out = []
    for name in _capture_names():
        folder = os.path.join(CAPTURES, name)
        (system,) = [f for f in os.listdir(folder) if ".system." in f]
        with open(os.path.join(folder, system), "rb") as f:
            recs = [ev.decode(line) for line in f if line.strip()]
        start = recs[0]
        assert isinstance(start, ev.SessionStart)
        samples = [r for r in recs if isinstance(r, ev.SystemSample)]
        out.append(
            Capture(
                start.host,
                start.app,
                start.job_id or "",
                {d.device_id: d for d in start.devices},
                samples[-1],
            )
        )
    return out


def _copy_system(src_folder: str, dest: str, session_id: str | None, keep_end: bool) -> None:
    """The capture's system stream, as a new session when ``session_id`` is given; without its
    session_end (a session still running) unless ``keep_end``."""
    (name,) = [f for f in os.listdir(src_folder) if ".system." in f]
    with open(os.path.join(src_folder, name), "rb") as f:
        data = f.read()
    old = ev.parse_segment_name(name)
    assert old is not None
    lines = data.splitlines(keepends=True)
    if not keep_end:
        lines = [x for x in lines if b'"type":"session_end"' not in x]
    data = b"".join(lines)
    if session_id is not None:
        data = data.replace(old.session_id.encode(), session_id.encode())
        name = name.replace(old.session_id, session_id)
    with open(os.path.join(dest, name), "wb") as out:
        out.write(data)


class Stack:
    def __init__(self, base: str) -> None:
        self.base = base
        self.procs: list[subprocess.Popen[bytes]] = []
        self.agent_ports: dict[str, int] = {}
        self.prom_port = free_port()
        self.prom = f"http://127.0.0.1:{self.prom_port}/api/v1/"

    def spawn(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        log = open(os.path.join(self.base, f"{name}.log"), "wb")  # noqa: SIM115 - handed to the child
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs.append(p)
        return p

    def log(self, name: str) -> str:
        with open(os.path.join(self.base, f"{name}.log"), errors="replace") as f:
            return f.read()[-3000:]

    def query(self, expr: str, **params: str) -> list[dict[str, Any]]:
        r = httpx.get(self.prom + "query", params={"query": expr, **params}, timeout=10)
        body = r.json()
        assert r.status_code == 200 and body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _agent_metrics(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            k, _, v = line.partition(" ")
            out[k] = float(v)
    return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require("prometheus and promtool (Debian package prometheus)", _prometheus() is not None)
    require("the project's backend (gpufl.backend)", backend_available())
    base = str(tmp_path_factory.mktemp("prom"))
    data = os.path.join(base, "backend")
    os.mkdir(data)
    backend = Backend(data).start()
    st = Stack(base)
    try:
        folders = {k: os.path.join(base, k) for k in ("capture", "one", "hundred")}
        for f in folders.values():
            os.mkdir(f)
        # Every capture, all streams, as recorded: the agent ships them whole.
        for name in _capture_names():
            for seg in os.listdir(os.path.join(CAPTURES, name)):
                shutil.copy(os.path.join(CAPTURES, name, seg), folders["capture"])
        # One running session of gpt_train, and 100 of the same app on the same host.
        train = os.path.join(CAPTURES, "gpt_train")
        _copy_system(train, folders["one"], None, keep_end=False)
        for i in range(100):
            _copy_system(train, folders["hundred"], f"hundred-{i:03d}", keep_end=False)
        env_extra = {"capture": ["--gpu-metrics=both"], "one": [], "hundred": []}
        for name, folder in folders.items():
            port = st.agent_ports[name] = free_port()
            st.spawn(
                f"agent-{name}",
                agent_args(
                    folder,
                    backend.url,
                    backend.token,
                    f"--metrics-port={port}",
                    "--poll-interval=0.1",
                    *env_extra[name],
                ),
            )
        # Wait until each agent has delivered everything in its folder.
        deadline = time.monotonic() + 60
        pending = set(folders)
        while pending:
            for name in list(pending):
                try:
                    m = _agent_metrics(st.agent_ports[name])
                except httpx.TransportError:
                    continue
                if m.get("gpufl_agent_lag_known") == 1 and m.get("gpufl_agent_lag_bytes") == 0:
                    pending.discard(name)
            if time.monotonic() > deadline:
                pytest.fail(f"agents {pending} did not drain: {[st.log('agent-' + n) for n in pending]}")
            time.sleep(0.2)
        drained = time.time()
        prom_yml = os.path.join(base, "prometheus.yml")
        with open(prom_yml, "w") as cfg:
            json.dump(  # YAML is a superset of JSON
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [RULES],
                    "scrape_configs": [
                        {"job_name": n, "static_configs": [{"targets": [f"127.0.0.1:{p}"]}]}
                        for n, p in st.agent_ports.items()
                    ],
                },
                cfg,
            )
        prom, _ = _prometheus() or ("", "")
        proc = st.spawn(
            "prometheus",
            [
                prom,
                f"--config.file={prom_yml}",
                f"--storage.tsdb.path={os.path.join(base, 'tsdb')}",
                f"--web.listen-address=127.0.0.1:{st.prom_port}",
            ],
        )
        # Ready once every target was scraped after its agent drained, and every rule evaluated.
        deadline = time.monotonic() + 40
        while True:
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited: {st.log('prometheus')}")
            try:
                ups = st.query(f"timestamp(up == 1) > {drained + 2.5}")
                rules = httpx.get(st.prom + "rules", timeout=5).json()["data"]["groups"]
                evaluated = bool(rules) and all(
                    not r["lastEvaluation"].startswith("0001") for g in rules for r in g["rules"]
                )
                if len(ups) == len(folders) and evaluated:
                    break
            except (httpx.TransportError, AssertionError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus not ready: {st.log('prometheus')}")
            time.sleep(0.3)
        yield st
    finally:
        st.stop()
        backend.stop()


def _value(stack: Stack, expr: str) -> float:
    res = stack.query(expr)
    assert len(res) == 1, (expr, res)
    return float(res[0]["value"][1])


def _sel(**labels: str) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def test_every_gpu_and_host_metric_of_the_last_sample_is_queryable(stack: Stack) -> None:
    """Each capture's last sample: every non-null GPU/host field under its gpufl name, with its labels
    and its value in base units; every null field (fan on the H100: NotSupported) has no series."""
    assert set(GPU_EXPECTED) == set(ev.GpuSample.__struct_fields__) - {"device_id"}
    assert set(HOST_EXPECTED) == set(ev.HostSample.__struct_fields__)
    checked = absent = 0
    for cap in _captures():
        for g in cap.last.gpus:
            dev = cap.devices[g.device_id]
            labels = dict(
                job="capture",
                host=cap.host,
                app=cap.app,
                gpu=str(g.device_id),
                uuid=dev.uuid or "",
                model=dev.name or "",
                pci_bus_id=dev.pci_bus_id or "",
            )
            for field, (name, scale, _, _) in GPU_EXPECTED.items():
                v = getattr(g, field)
                if v is None:
                    assert stack.query(name + _sel(job="capture", app=cap.app)) == [], name
                    absent += 1
                else:
                    got = _value(stack, name + _sel(**labels))
                    assert got == pytest.approx(float(v) * scale, rel=1e-12), (cap.app, name)
                    checked += 1
        assert cap.last.host is not None
        hl = dict(job="capture", host=cap.host, app=cap.app)
        for field, (name, scale) in HOST_EXPECTED.items():
            v = getattr(cap.last.host, field)
            assert v is not None
            assert _value(stack, name + _sel(**hl)) == pytest.approx(float(v) * scale, rel=1e-12)
            checked += 1
        ts = _value(stack, "gpufl_system_sample_timestamp_seconds" + _sel(**hl))
        assert ts == pytest.approx(cap.last.ts_ns / 1e9, rel=1e-15)
        # The captures all ended: no session of theirs is running.
        assert _value(stack, "gpufl_sessions_running" + _sel(**hl)) == 0
    # H100 captures, one GPU each: 14 fields recorded per GPU sample + 4 host fields; fan null (NotSupported);
    # PCIe null where the client predates its sampling or the last sample was not one that read it.
    n = len(_captures())
    assert n >= 6 and checked + absent == n * (len(GPU_EXPECTED) + len(HOST_EXPECTED)) and absent >= n


def test_dcgm_exporter_names_and_units(stack: Stack) -> None:
    """--gpu-metrics=both adds dcgm-exporter's names, units and label names (Hostname, UUID, modelName)."""
    checked = 0
    for cap in _captures():
        for g in cap.last.gpus:
            dev = cap.devices[g.device_id]
            labels = dict(
                job="capture", Hostname=cap.host, app=cap.app, gpu=str(g.device_id), UUID=dev.uuid or ""
            )
            labels["modelName"] = dev.name or ""
            for field, (_, _, dcgm, scale) in GPU_EXPECTED.items():
                v = getattr(g, field)
                if dcgm is None or v is None:
                    continue
                assert _value(stack, dcgm + _sel(**labels)) == pytest.approx(float(v) * scale, rel=1e-12)
                checked += 1
    assert checked >= len(_captures()) * 11
    # The default (gpufl names) has none of them.
    assert stack.query('count({job="one", __name__=~"DCGM_.*"})') == []


def test_exposition_is_valid_openmetrics(stack: Stack) -> None:
    r = httpx.get(
        f"http://127.0.0.1:{stack.agent_ports['capture']}/metrics",
        headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        timeout=5,
    )
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    fams = {f.name: f for f in text_string_to_metric_families(r.text)}  # raises on invalid OpenMetrics
    energy = fams["gpufl_gpu_energy_joules"]
    assert energy.type == "counter" and {s.name for s in energy.samples} == {"gpufl_gpu_energy_joules_total"}
    assert fams["gpufl_gpu_memory_used_bytes"].type == "gauge"


def test_hundred_sessions_of_one_app_make_the_series_of_one(stack: Stack) -> None:
    def series(job: str) -> set[tuple[tuple[str, str], ...]]:
        res = stack.query(f'{{job="{job}", __name__=~"{GPUFL_SERIES}"}}')
        return {
            tuple(sorted((k, v) for k, v in r["metric"].items() if k not in ("job", "instance"))) for r in res
        }

    one, hundred = series("one"), series("hundred")
    assert len(one) == 14 + 4 + 2  # 14 recorded GPU fields, 4 host fields, sample time, sessions running
    assert hundred == one
    running = 'gpufl_sessions_running{{job="{}", app="gpt_train"}}'
    assert _value(stack, running.format("one")) == 1 and _value(stack, running.format("hundred")) == 100


def test_dashboard_json_is_what_the_builder_generates() -> None:
    r = subprocess.run([sys.executable, BUILDER, "--check"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def _dashboard_exprs() -> list[tuple[str, str]]:
    with open(DASHBOARD) as f:
        d = json.load(f)
    out = [(p["title"], t["expr"]) for p in d["panels"] for t in p.get("targets", [])]
    for v in d["templating"]["list"]:
        m = (
            re.fullmatch(r"label_values\((.+), (\w+)\)", v.get("query") or "")
            if v["type"] == "query"
            else None
        )
        if m:
            out.append((f"variable {v['name']}", m.group(1)))
    return out


def _never_recorded() -> set[str]:
    """gpufl names of GPU fields no capture ever recorded (PCIe throughput, fan on the H100)."""
    seen: set[str] = set()
    for cap in _captures():
        for g in cap.last.gpus:
            seen |= {f for f in GPU_EXPECTED if getattr(g, f) is not None}
    return {GPU_EXPECTED[f][0] for f in GPU_EXPECTED if f not in seen}


def test_every_dashboard_query_returns_series(stack: Stack) -> None:
    exprs = _dashboard_exprs()
    assert len(exprs) >= 12
    never = _never_recorded()
    empty_ok = 0
    for title, expr in exprs:
        # Grafana's "All" for the label variables is .* (allValue); the rate window as Grafana would pick it.
        q = re.sub(r"\$(host|app|gpu)\b", ".*", expr).replace("$__rate_interval", "10s")
        assert "$" not in q, q
        res = stack.query(q)
        names = set(re.findall(r"\b(gpufl_[a-z_]+)\b", q))
        if names and names <= never:
            empty_ok += 1  # the captures hold no such reading, so nothing to show: must be empty then
            assert res == [], (title, q)
        else:
            assert res, (title, q)
    assert empty_ok == 2  # the PCIe panel's two queries


def test_alert_rules_check_and_evaluate(stack: Stack) -> None:
    _, promtool = _prometheus() or ("", "")
    r = subprocess.run([promtool, "check", "rules", RULES], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([promtool, "test", "rules", RULE_TESTS], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    groups = httpx.get(stack.prom + "rules", timeout=5).json()["data"]["groups"]
    rules = [x for g in groups for x in g["rules"]]
    assert {x["name"] for x in rules} == {
        "GpuThrottled",
        "GpuMemoryNearCapacity",
        "GpuIdleWhileJobRuns",
        "GpuMetricsStale",
    }
    for rule in rules:
        # Evaluated by the Prometheus scraping the agents, without error...
        assert rule["health"] == "ok", rule
        stack.query(rule["query"])
        # ...on metrics the agents really expose (a misspelt name would evaluate fine, to nothing).
        for name in set(re.findall(r"\b(gpufl_[a-z_]+)\b", rule["query"])):
            assert stack.query(f"count({name})"), (rule["name"], name)
