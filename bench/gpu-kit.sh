#!/usr/bin/env bash
# Packs the WebGPU conformance tests and the GPU table for a machine that has a GPU but no package registry and no Node.js (the device
# machines lent to this workplace): .gpu-kit/ holds Node, the npm packages the bench loads at run time (esbuild,
# webgpu's Dawn for linux-x64, node-llama-cpp with its prebuilt Vulkan build), the built WASM kernels and WGSL,
# the Llama 2 vocabulary the model writer copies, and Debian's Vulkan loader. bench/gpu-run.sh unpacks it there
# and runs the WebGPU tests and `npm run bench -- --backend webgpu`. The kit is git-ignored and must stay under the device tool's
# 64 MiB (the repo's own files travel too); carry it with the run: carry [".gpu-kit"].
# Usage (here, once the repo is installed): bash bench/gpu-kit.sh
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=.gpu-kit
export XZ_OPT=-9
rm -rf "$KIT"
mkdir -p "$KIT/gl"

# what the run needs built (build/, the generated shader and kernel sources are git-ignored)
npm run -s build:wasm >/dev/null
npm run -s build:wgsl >/dev/null

# Node: the binary this machine runs (linked only against glibc and libstdc++)
node_bin=$(readlink -f "$(command -v node)")
tar -C "$(dirname "$node_bin")" -cJf "$KIT/node.tar.xz" "$(basename "$node_bin")"

# npm packages: the repo's dependencies, esbuild, webgpu, node-llama-cpp and vitest with their dependency closure, less what the run never loads
# (other platforms' Dawn builds, node-llama-cpp's llama.cpp source bundle, its CPU and CUDA builds)
mapfile -t packages < <(node -e '
  const fs = require("fs"), path = require("path"), seen = new Set();
  const visit = (name) => {
    if (seen.has(name)) return;
    seen.add(name);
    const pj = JSON.parse(fs.readFileSync(path.join("node_modules", name, "package.json"), "utf8"));
    for (const d of Object.keys(pj.dependencies ?? {})) visit(d);
    // optional and required peer ones where installed (vite; the native builds for this platform), but of
    // the node-llama-cpp builds only the Vulkan one (named below)
    const peers = Object.keys(pj.peerDependencies ?? {}).filter((d) => !pj.peerDependenciesMeta?.[d]?.optional);
    for (const d of [...Object.keys(pj.optionalDependencies ?? {}), ...peers]) {
      if (!d.startsWith("@node-llama-cpp/") && fs.existsSync(path.join("node_modules", d, "package.json"))) visit(d);
    }
  };
  const own = Object.keys(JSON.parse(fs.readFileSync("package.json", "utf8")).dependencies ?? {});
  for (const root of [...own, "esbuild", "@esbuild/linux-x64", "webgpu", "node-llama-cpp", "@node-llama-cpp/linux-x64-vulkan", "vitest"]) {
    if (!fs.existsSync(path.join("node_modules", root))) { console.error(`gpu-kit: node_modules/${root} is missing (npm install; the Vulkan build: npm install --no-save @node-llama-cpp/linux-x64-vulkan@<node-llama-cpp version>)`); process.exit(1); }
    visit(root);
  }
  console.log([...seen].map((n) => `node_modules/${n}`).join("\n"));
')
tar -cJf "$KIT/modules.tar.xz" \
  --exclude='node_modules/webgpu/dist/darwin-*' --exclude='node_modules/webgpu/dist/win32-*' --exclude='node_modules/webgpu/dist/linux-arm64' \
  --exclude='node_modules/node-llama-cpp/llama/gitRelease.bundle' --exclude='*.map' \
  "${packages[@]}" build src/backend/webgpu/shaders.generated.ts src/backend/wasm/kernels.generated.ts

# the vocabulary bench/src/models.ts writes into its synthetic models
mkdir -p "$KIT/shared/models"
cp "${WASMFORGE_SHARED:-../shared}/models/llama-2-tiny-random.gguf" "$KIT/shared/models/"

# Debian's Vulkan loader (the device image has the NVIDIA driver and its ICD, not the loader)
if command -v apt-get >/dev/null; then
  lists=$(mktemp -d)
  mkdir -p "$lists/partial"
  o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$lists")
  apt-get "${o[@]}" update -qq >/dev/null 2>&1
  (cd "$KIT/gl" && apt-get "${o[@]}" download -qq libvulkan1 >/dev/null 2>&1)
  rm -rf "$lists"
fi

du -sh "$KIT"/* | sed 's/^/gpu-kit: /'
total=$(du -sb "$KIT" | cut -f1)
echo "gpu-kit: $((total / 1048576)) MiB in $KIT (the device tool carries at most 64 MiB with the repo's own files)"
if [ "$total" -gt $((56 * 1048576)) ]; then
  echo "gpu-kit: too big to carry" >&2
  exit 1
fi
