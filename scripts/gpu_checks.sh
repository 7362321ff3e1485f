#!/usr/bin/env bash
# Runs on the lent H100 (device tool): GPU tests, real captures, overhead bench. Results go to $OUT.
# Usage there:  bash scripts/gpu_checks.sh [tests] [captures] [bench] [suite] [survival] [run] [costs] [deep] [sass] [remote]
#               [windows] [frameworks] [gpm] [sassstall] [capturecost] [next]
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD/src:/tmp/site PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
what=${*:-tests captures bench}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
if [[ $what == *tests* ]]; then
  python3 -m pytest -p no:cacheprovider tests/gpu -v -x --timeout 600 2>&1 | tee "$OUT/gpu_tests.log" | tail -40
fi
if [[ $what == *captures* ]]; then
  cap=/tmp/captures; rm -rf $cap; mkdir -p $cap
  python3 examples/workloads/gpt_train.py --warmup 2 --steps 10 --mode gpufl --log-dir $cap/gpt_train --app-name gpt_train > "$OUT/capture_gpt.txt" 2>&1
  python3 examples/workloads/memcpy_heavy.py --rounds 5 --log-dir $cap/memcpy_heavy > "$OUT/capture_memcpy.txt" 2>&1
  python3 examples/workloads/multistream.py --iters 30 --log-dir $cap/multistream > "$OUT/capture_multistream.txt" 2>&1
  du -sh $cap/*; tar -C $cap -czf "$OUT/captures.tgz" .
fi
if [[ $what == *bench* ]]; then
  python3 bench/client_overhead.py --rounds ${ROUNDS:-5} --steps ${STEPS:-100} --modes ${MODES:-none,gpufl,torch-profiler} --json "$OUT/overhead.json" 2>&1 | tee "$OUT/overhead.txt"
fi
if [[ $what == *suite* ]]; then
  # the GPU suite N times in a row on both record paths (issue #15's bar: 3); carry pytest-xdist and execnet
  # wheels in .whl to run it 4 at a time (95 s on the H100), else it runs serially
  xdist=(); python3 -c "import xdist" 2>/dev/null && xdist=(-p xdist -n "${JOBS:-4}")
  for i in $(seq "${N:-3}"); do
    # -v: each test's name as it ends, so a run cut by a time limit still says which passed (session 14's did not)
    python3 -m pytest -p no:cacheprovider "${xdist[@]}" tests/gpu -v -rfEs --timeout 300 > "$OUT/gpu_suite_$i.log" 2>&1
    echo "GPU suite run $i: exit $? — $(tail -1 "$OUT/gpu_suite_$i.log")"
  done
fi
if [[ $what == *survival* ]]; then
  # #15's hand-over soak: every case RUNS times per record path, fresh process each, interleaved
  python3 bench/survival.py --runs ${RUNS:-20} --jobs ${JOBS:-12} --json "$OUT/survival.json" 2>&1 | tee "$OUT/survival.txt" | tail -20
fi
if [[ $what == *run* ]]; then
  # `gpufl run` on an unmodified training script (gpt_train.py --mode none never imports gpufl).
  rm -rf /tmp/runlogs
  python3 -m gpufl run --log-dir /tmp/runlogs/gpt_unmodified --app-name gpt_unmodified -- \
    python3 examples/workloads/gpt_train.py --mode none --warmup 2 --steps 8 > "$OUT/gpufl_run.txt" 2>&1
  echo "gpufl run exit code: $?" >> "$OUT/gpufl_run.txt"
  tar -C /tmp/runlogs -czf "$OUT/gpufl_run_logs.tgz" .
fi
if [[ $what == *costs* ]]; then
  # What recording costs (#27, #21, #20) on the launch-bound GPT loop, fresh process per mode, interleaved:
  # sync records off (the default) and on, the capture modes, the system engine alone with GPM, and — with
  # PREV set to a copy of an older tree (`git archive 6a1fbcd^ src scripts | tar -x -C "$PREV"`, the tree
  # before contract v3) — that tree with its own native build, in the same run.
  modes="none,gpufl,gpufl@GPUFL_SYNCS=1,gpufl@GPUFL_CAPTURE=windows:2s/60s,gpufl@GPUFL_CAPTURE=on-demand,gpufl@GPUFL_ENGINES=system"
  if [[ -n ${PREV:-} ]]; then
    (cd "$PREV" && bash scripts/build_native.sh python3) > "$OUT/prev_build.txt" 2>&1 && modes+=",gpufl@PYTHONPATH=$PREV/src:/tmp/site"
  fi
  python3 bench/client_overhead.py --workload gpt --rounds ${ROUNDS:-4} --steps ${STEPS:-40} --modes "$modes" \
    --json "$OUT/costs.json" 2>&1 | tee "$OUT/costs.txt" | tail -30
fi
if [[ $what == *deep* ]]; then
  # The deep engines (#19) beside Nsight Compute on examples/workloads/deep_truth.py: ncu's divergence and sampled
  # stalls, then gpufl's SASS metrics (with and without tracing, a range per kernel or one for the session) and PC
  # sampling; each recording read by bench/deep_truth.py. Recordings in $OUT/deep_captures.tgz.
  d=/tmp/deep; rm -rf $d; mkdir -p $d; export DEEP_TRUTH_BUILD=$d/build
  python3 examples/workloads/deep_truth.py --launches 1 > /dev/null 2>&1
  ncu --clock-control none --csv --metrics smsp__thread_inst_executed_per_inst_executed.ratio \
    python3 examples/workloads/deep_truth.py --launches 1 > $d/ncu_divergence.csv 2> /dev/null
  ncu --clock-control none --csv --page raw --section WarpStateStats --section SourceCounters \
    -k regex:'mem_bound|compute_bound' python3 examples/workloads/deep_truth.py --kernels mem_bound,compute_bound \
    --launches 1 > $d/ncu_stalls.csv 2> /dev/null
  for v in "tracing,sass" "sass" "tracing,sass GPUFL_DEEP=session" "tracing,pc_sampling"; do
    read -r eng settings <<< "$v"; n=$(echo "$v" | tr ' ,=' '___')
    env $settings timeout -k 3 90 python3 examples/workloads/deep_truth.py --gpufl --engines "$eng" --launches 3 \
      --log-dir $d/$n > $d/$n.txt 2>&1
    echo "== $v (exit $?)" | tee -a "$OUT/deep_truth.txt"
    grep -h '"notice"' $d/$n/*.log 2>/dev/null | grep -v record_path | cut -c1-300 | tee -a "$OUT/deep_truth.txt"
    timeout -k 3 60 python3 bench/deep_truth.py $d/$n --ncu-divergence $d/ncu_divergence.csv \
      --ncu-stalls $d/ncu_stalls.csv >> "$OUT/deep_truth.txt" 2>&1
  done
  tar -C $d --exclude=build -czf "$OUT/deep_captures.tgz" .
fi
if [[ $what == *sass* ]]; then
  # SASS metrics and CUPTI's kernel kinds (#19): the C probe's orders — several functions and ranges, without
  # kernel activity, with the concurrent kind, with the serial kind (docs/gpu-runs/session11-sass.txt).
  d=/tmp/sass; rm -rf $d; mkdir -p $d
  nvcc -arch=sm_90 -lineinfo -o $d/probe scripts/probes/sass_order.cu -L/usr/local/cuda/lib64 -lcupti -lcuda
  for v in "after both ranges=3" "after activity both ranges=2" "after activity kernel_kind both ranges=2" \
           "after activity_late" "after both uniform_first"; do
    timeout -k 3 20 $d/probe $v 2>&1 | grep -E "variant|RANGE|RESULT|ERROR|NOT_|activity kernels" | tee -a "$OUT/sass_probe.txt"
  done
fi
if [[ $what == *remote* ]]; then
  # #22's bar: remote request -> first traced kernel in the client <= 2 s (backend, agent, client on this host)
  python3 bench/remote_capture.py --rounds ${ROUNDS:-5} --json "$OUT/remote_capture.json" 2>&1 | tee "$OUT/remote_capture.txt" | tail -20
fi
if [[ $what == *windows* ]]; then
  # #21's always-on bars: >= 2 minutes per run (the preset traces 2 s of every 60 s), fresh process per mode.
  # One round is ~7 min (three modes of ~2.2 min): ROUNDS=1 per device call, three calls for the bar's rounds;
  # bench/capture_overhead.py (capturecost) answers the same bars in one process, without the drift.
  # 12,000 steps: >= 2 minutes at the H100's 10.4 ms/step (9,000 took 94 s there, session 14)
  python3 bench/client_overhead.py --workload gpt --rounds ${ROUNDS:-1} --steps ${STEPS:-12000} --timeout 400 \
    --modes "none;gpufl@GPUFL_CAPTURE=windows;gpufl@GPUFL_CAPTURE=on-demand" --json "$OUT/windows.json" 2>&1 | tee "$OUT/windows.txt" | tail -20
fi
if [[ $what == *frameworks* ]]; then
  # #21's frameworks unmodified under `gpufl run`: JAX/XLA (NVTX-heavy) and torch.compile's CUDA graphs, continuous
  # and windows, beside no profiler and torch.profiler (CUDA), fresh process per mode, interleaved.
  # (torch.profiler is the reference only for torch's compiled graphs; the JAX loop has no torch in it)
  for w in jax compiled; do
    ref=""; [ $w = compiled ] && ref=";torch-profiler-cuda"
    python3 bench/client_overhead.py --workload $w --rounds ${ROUNDS:-3} --steps ${STEPS:-20} --timeout 300 \
      --modes "none;gpufl-run;gpufl-run@GPUFL_CAPTURE=windows$ref" --json "$OUT/$w.json" 2>&1 | tee "$OUT/$w.txt" | tail -20
  done
fi
if [[ $what == *gpm* ]]; then
  # #20's cost bar: GPM on/off in one process, alternating blocks (bench/gpm_overhead.py says why)
  # on the GPT loop, and on a pure-Python step (the GIL share) and bare launches (driver locks), which are quieter
  for w in spin launch gpt; do
    python3 bench/gpm_overhead.py --workload $w --seconds ${SECONDS_AB:-150} --block 2.5 --log-dir /tmp/gpm-$w \
      --json "$OUT/gpm_$w.json" 2>&1 | tee -a "$OUT/gpm_ab.txt" | tail -5
  done
fi
if [[ $what == *sassstall* ]]; then
  # #19's open stall: tracing + SASS metrics on the GPT loop (cuBLAS) did not finish its first step with CUPTI
  # 13.0.85 (sessions 10-12). Which part of tracing waits on CUPTI's patching? One switch off at a time, each
  # run under a 60 s limit, step times printed as they finish (GPUFL_WORKLOAD_VERBOSE). With CUPTI_DIR set (a
  # newer libcupti's folder) the same with it.
  for v in "" "GPUFL_NATIVE_FLUSH_MS=0" "GPUFL_NATIVE_CALLBACKS=0" "GPUFL_NATIVE_COPIES=0" "GPUFL_NATIVE_NVTX=0" "GPUFL_NATIVE_ACTIVITY=0"; do
    for lib in system ${CUPTI_DIR:+newer}; do
      extra=(); [ $lib = newer ] && extra=(GPUFL_LIBCUPTI=$CUPTI_DIR/libcupti.so.13 LD_LIBRARY_PATH=$CUPTI_DIR)
      env $v "${extra[@]}" GPUFL_WORKLOAD_VERBOSE=1 GPUFL_ENGINES=tracing,system,sass GPUFL_DEEP=session \
        timeout -k 5 60 python3 examples/workloads/gpt_train.py --mode gpufl --warmup 1 --steps 3 --log-dir /tmp/sassstall \
        > /tmp/sassstall.txt 2>&1
      echo "sass+tracing ${v:-as is} libcupti=$lib: exit $?, $(grep -c '^step' /tmp/sassstall.txt) steps: $(grep '^step' /tmp/sassstall.txt | tr '\n' ' ')" | tee -a "$OUT/sassstall.txt"
    done
  done
fi
if [[ $what == *capturecost* ]]; then
  # #21's mode bars in one process (bench/capture_overhead.py: a session open/closed in alternating blocks):
  # on-demand with no request, and continuous (a window's cost while open); windows = on-demand + duty x continuous
  for w in launch gpt; do for c in on-demand continuous; do
    python3 bench/capture_overhead.py --workload $w --capture $c --seconds ${SECONDS_AB:-90} --block 3 \
      --json "$OUT/capture_${w}_$c.json" 2>&1 | tail -5 | tee -a "$OUT/capture_cost.txt"
  done; done
fi
if [[ $what == *next* ]]; then
  # Session 14's plan for the next first call (~500 s; its closing note says why each): #22's deep-window test
  # alone, #21's JAX loop with lazy NVTX domains, #21's mode bars in one process, #20's PM sampling probe.
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl-server/*.whl > /dev/null 2>&1
  timeout -k 5 120 python3 -m pytest -p no:cacheprovider tests/gpu/test_capture_modes_gpu.py -v -rfEs --timeout 100 \
    > "$OUT/capture_modes.log" 2>&1; echo "capture modes GPU tests: exit $? — $(tail -1 "$OUT/capture_modes.log")"
  rm -rf /tmp/jaxrun; timeout -k 5 60 python3 -m gpufl run --log-dir /tmp/jaxrun --app-name jaxrun -- \
    python3 examples/workloads/jax_loop.py --mode none --iters 1000 --steps 5 > "$OUT/jaxrun.txt" 2>&1
  grep -h nvtx_domains_left_out /tmp/jaxrun/*.log | cut -c1-400 | tee -a "$OUT/jaxrun.txt"
  timeout -k 5 190 python3 bench/client_overhead.py --workload jax --rounds 3 --steps 20 --timeout 50 \
    --modes "none;gpufl-run;gpufl-run@GPUFL_CAPTURE=windows" --json "$OUT/jax.json" 2>&1 | tee "$OUT/jax.txt" | tail -12
  for c in on-demand continuous; do
    timeout -k 5 110 python3 bench/capture_overhead.py --workload launch --capture $c --seconds 80 --block 2.5 \
      --json "$OUT/capture_launch_$c.json" 2>&1 | tail -5 | tee -a "$OUT/capture_cost.txt"
  done
  timeout -k 5 70 python3 -c "from gpufl.client.engines import pm_sampling as p; print('PM sampling probe:', p.run_probe())" \
    2>&1 | tail -1 | tee "$OUT/pm_probe.txt"
fi
