#!/usr/bin/env bash
# Prints the Debian/Ubuntu packages that own the shared libraries the given
# binaries load (ldd + dpkg -S), one per line: the runtime image installs
# exactly these instead of the -dev packages the build needed.
# Libraries of the NVIDIA driver (libcuda, libnvidia-*) are skipped: the
# NVIDIA container runtime mounts them from the host when the container starts.
set -euo pipefail
(($#)) || { echo "usage: $0 BINARY..." >&2; exit 2; }

owner() {  # package owning a library path; with merged /usr it may be listed under /usr or not
  local lib=$1 real
  real=$(readlink -f "$lib")
  for p in "$lib" "/usr$lib" "${lib#/usr}" "$real" "/usr$real" "${real#/usr}"; do
    if out=$(dpkg-query -S "$p" 2>/dev/null); then
      echo "${out%%:*}"
      return 0
    fi
  done
  return 1
}

declare -A packages=()
for binary in "$@"; do
  while read -r name _ path _; do
    case "$name" in linux-vdso.so.*|/*) continue ;; esac
    if [[ "$name" == libcuda.so* || "$name" == libnvidia-* ]]; then continue; fi
    if [[ "$path" == "not" ]]; then
      echo "$binary: $name not found" >&2
      exit 1
    fi
    if ! pkg=$(owner "$path"); then
      echo "$binary: no package owns $path" >&2
      exit 1
    fi
    packages[$pkg]=1
  done < <(ldd "$binary" | grep '=>')
done
printf '%s\n' "${!packages[@]}" | sort
