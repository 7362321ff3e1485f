#!/usr/bin/env bash
# Runs on the lent H100: build the native record path there, capture raw CUPTI buffers + logs for the no-GPU
# tests, run the GPU tests on both paths, and a quick overhead check. Results go to $OUT.
#   bash scripts/gpu_native.sh [build] [fixtures] [tests] [quick] [probe] [bench-loop] [bench-gpt] [attribute] [native-tests] [launch-cost]
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD/src:/tmp/site PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
what=${*:-build fixtures tests quick}
bash scripts/build_native.sh python3 2>&1 | tee "$OUT/build.txt" || exit 1
python3 -c "import gpufl.client._native as n, gpufl.client.engines.native_tracing as t; print(n.__file__, t.unavailable_reason())" 2>&1 | tee -a "$OUT/build.txt"
if [[ $what == *fixtures* ]]; then
  fx=/tmp/fixtures; rm -rf $fx; mkdir -p $fx/loop/dump $fx/gpt/dump
  GPUFL_NATIVE_DUMP_DIR=$fx/loop/dump python3 examples/workloads/matmul_loop.py --mode gpufl --steps 2 --warmup 1 --iters 100 --log-dir $fx/loop/logs > "$OUT/fx_loop.txt" 2>&1
  GPUFL_NATIVE_DUMP_DIR=$fx/gpt/dump python3 examples/workloads/gpt_train.py --mode gpufl-stacks --steps 2 --warmup 1 --log-dir $fx/gpt/logs > "$OUT/fx_gpt.txt" 2>&1
  du -sh $fx/*/*; tar -C $fx -czf "$OUT/native_fixtures.tgz" .
fi
if [[ $what == *tests* ]]; then
  timeout 400 python3 -m pytest -p no:cacheprovider tests/gpu -x -q --timeout 300 2>&1 | tee "$OUT/gpu_tests.log" | tail -25
fi
if [[ $what == *quick* ]]; then
  timeout 200 python3 bench/client_overhead.py --workload loop --rounds 2 --steps 10 --modes none,gpufl,gpufl-stacks,gpufl-python 2>&1 | tail -8 | tee "$OUT/quick_loop.txt"
  timeout 200 python3 bench/client_overhead.py --workload gpt --rounds 2 --steps 30 --modes none,gpufl,gpufl-stacks 2>&1 | tail -7 | tee "$OUT/quick_gpt.txt"
fi
if [[ $what == *probe* ]]; then
  for p in 1 0; do GPUFL_NATIVE=$p timeout 120 python3 scripts/probe_profiler.py /tmp/probe$p > "$OUT/probe_prof_$p.txt" 2>&1; echo "exit $?" >> "$OUT/probe_prof_$p.txt"; done
  tail -n 5 "$OUT"/probe_prof_*.txt
fi
if [[ $what == *bench-loop* ]]; then
  python3 bench/client_overhead.py --workload loop --rounds ${ROUNDS:-5} --steps 20 --modes ${LOOP_MODES:-none,gpufl,gpufl-stacks,torch-profiler-cuda} --json "$OUT/overhead_loop.json" 2>&1 | tee "$OUT/overhead_loop.txt" | tail -30
fi
if [[ $what == *bench-gpt* ]]; then
  python3 bench/client_overhead.py --workload gpt --rounds ${ROUNDS:-5} --steps ${STEPS:-60} --modes ${MODES:-none,gpufl,gpufl-stacks,torch-profiler-cuda} --json "$OUT/overhead_gpt.json" 2>&1 | tee "$OUT/overhead_gpt.txt" | tail -40
fi
if [[ $what == *attribute* ]]; then
  python3 bench/client_overhead.py --workload gpt --rounds ${ROUNDS:-3} --steps 60 --modes none,gpufl,gpufl-activity-only,gpufl-callbacks-only --json "$OUT/attribute_gpt.json" 2>&1 | tee "$OUT/attribute_gpt.txt" | grep -B2 -A8 "^gpt:"
fi
if [[ $what == *native-tests* ]]; then
  timeout 300 python3 -m pytest -p no:cacheprovider tests/gpu/test_native_gpu.py -q -s --timeout 200 2>&1 | tee "$OUT/native_tests.log" | tail -15
fi
if [[ $what == *launch-cost* ]]; then
  (cat /proc/cpuinfo | grep -m1 "model name"; nproc; numactl -H 2>/dev/null | head -3; which perf; nvidia-smi -q | grep -i -m3 "persistence\|compute mode") > "$OUT/env.txt" 2>&1
  python3 bench/launch_cost.py --rounds ${ROUNDS:-5} --json "$OUT/launch_cost.json" 2>&1 | tee "$OUT/launch_cost.txt"
fi
