#!/usr/bin/env bash
# The WebGPU conformance tests and the GPU table on a machine without Node.js or a package registry, from the
# kit bench/gpu-kit.sh packed (carried as .gpu-kit): unpack Node, the npm packages and the build, install the
# Vulkan loader, point Vulkan at the NVIDIA driver, then run
#   tests: test/backend-ops.test.ts and test/webgpu.test.ts on the GPU (every op and type against the reference
#          backend, the models, split weights and KV, subgroups and shader-f16 both ways)
#   bench: the bench's WebGPU table (default: l1b Q4_0 and the 8B-shaped Q4_K model, 3 repetitions, the WASM path at
#          the machine's thread count; further arguments go to the bench)
#   all:   both (the default)
# GPU_TESTS names other test files (and vitest options) for the tests.
# Logs and results are copied to $OUT where it is set (the device tool).
# Usage there: bash bench/gpu-run.sh [tests|bench|all] [bench options]
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=.gpu-kit
[ -f "$KIT/node.tar.xz" ] || { echo "gpu-run: no $KIT here (run bench/gpu-kit.sh where npm works, and carry .gpu-kit)" >&2; exit 1; }

# the Vulkan loader, where the system has none
if ! ldconfig -p | grep -q 'libvulkan.so.1'; then
  for f in "$KIT"/gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
# the NVIDIA driver's ICD (its folder is a mount the loader does not search by default)
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
  if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; fi
done

mkdir -p "$KIT/bin"
tar -C "$KIT/bin" -xJf "$KIT/node.tar.xz"
export PATH="$PWD/$KIT/bin:$PATH"
tar -xJf "$KIT/modules.tar.xz"
export WASMFORGE_SHARED="$PWD/$KIT/shared"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"

echo "gpu-run: node $(node --version), $(nproc) cores, Vulkan driver ${VK_DRIVER_FILES:-${VK_ICD_FILENAMES:-(loader default)}}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

mode=all
case "${1:-}" in tests|bench|all) mode=$1; shift ;; esac
status=0
if [ "$mode" != bench ]; then
  log=${OUT:-/tmp}/gpu-tests.log
  # (shader-f16's own test needs Deno on lavapipe; on a GPU with the feature every test runs with it on)
  read -r -a tests <<< "${GPU_TESTS:-test/backend-ops.test.ts test/webgpu.test.ts}"
  NODE_OPTIONS=--import=./scripts/node-polyfills.mjs node node_modules/vitest/vitest.mjs run "${tests[@]}" -t '^(?!.*WebGPU shader-f16)' > "$log" 2>&1 || status=$?
  grep -E 'FAIL|Error|Test Files|Tests |Duration' "$log" | head -40 || true
fi
if [ "$mode" != tests ]; then
  if [ $# -eq 0 ]; then set -- --models l1b:q4_0,l8b --reps 3; fi
  marker=$(mktemp)
  node bench/run.js --backend webgpu --no-install --no-bandwidth --threads "$(nproc)" "$@" || status=$?
  # this run's results (the device tool brings back at most 8 files)
  if [ -n "${OUT:-}" ]; then find bench/results -type f -newer "$marker" -exec cp {} "$OUT"/ \; ; fi
fi
exit $status
