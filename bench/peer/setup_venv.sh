#!/usr/bin/env bash
# Creates the peer-benchmark venv: gguf + numpy + llama-cpp-python (which
# builds llama.cpp from its PyPI sdist, CPU-native). Idempotent: a venv that
# already imports all three is left alone. Takes many minutes on 2 cores.
#
# Usage: bench/peer/setup_venv.sh [VENV_DIR]   (default: build-peer/venv)
# Env:   PEER_JOBS (build parallelism, default: nproc)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="${1:-${PEER_VENV:-$ROOT/build-peer/venv}}"
JOBS="${PEER_JOBS:-$(nproc)}"
# Versions pinned so that the GGUF layout and the low-level C API the drivers
# call stay the ones they were written against.
LLAMA_CPP_PYTHON_VERSION="0.3.36"
GGUF_VERSION="0.19.0"

if [[ -x "$VENV/bin/python" ]] &&
   "$VENV/bin/python" -c 'import gguf, numpy, llama_cpp' 2>/dev/null; then
  echo "peer venv ready: $VENV"
  exit 0
fi

python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet "numpy" "gguf==$GGUF_VERSION"

# The sdist is unpacked next to the venv and built from there: its vendored
# llama.cpp source is what the drivers are checked against, nothing else has
# to be downloaded for it, and with a fixed source path the build directory
# below survives an interrupted setup (the build resumes instead of
# starting over).
PEER_DIR="$(dirname "$VENV")"
SDIST="$PEER_DIR/sdist/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz"
SRC="$PEER_DIR/src/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION"
if [[ ! -f "$SDIST" ]]; then
  "$VENV/bin/pip" download --quiet --no-deps --no-binary llama-cpp-python \
    -d "$PEER_DIR/sdist" "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION"
fi
if [[ ! -f "$SRC/pyproject.toml" ]]; then
  mkdir -p "$PEER_DIR/src"
  tar xzf "$SDIST" -C "$PEER_DIR/src"
fi
BUILD="$PEER_DIR/llama-build"
if [[ -f "$BUILD/CMakeCache.txt" ]] && ! grep -q "$SRC" "$BUILD/CMakeCache.txt"; then
  rm -rf "$BUILD"  # configured from another source path: CMake refuses to reuse it
fi

# GGML_NATIVE: build for this CPU (AVX-512/BF16 where present), as a CPU user
# would; the timing comparison is only fair against llama.cpp's best CPU build.
# LLAVA_BUILD=OFF: the multimodal library is not used and is a quarter of the
# build.
export CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_OPENMP=ON -DCMAKE_BUILD_TYPE=Release"
CMAKE_ARGS+=" -DLLAVA_BUILD=OFF"
export CMAKE_BUILD_PARALLEL_LEVEL="$JOBS"
"$VENV/bin/pip" install --verbose --config-settings=build-dir="$BUILD" "$SRC"
"$VENV/bin/python" -c \
  'import gguf, numpy, llama_cpp; print("peer venv ready:", llama_cpp.__version__)'
