#!/usr/bin/env bash
# Runs `pacs serve` on its embedded defaults (SQLite index and local folder under the data
# directory; DICOM on 11112, DICOMweb on 8080), building it first: the one command to try the
# archive on a fresh Debian or Ubuntu machine. The codecs (CharLS, libjpeg-turbo, OpenJPEG) build
# from source with a C/C++ compiler and CMake (NASM for libjpeg-turbo's SIMD code); those are
# installed with apt-get when missing (as root, or through sudo). Arguments go to `pacs serve`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/lib.sh
. scripts/lib.sh

missing=()
command -v cc >/dev/null 2>&1 && command -v c++ >/dev/null 2>&1 || missing+=(build-essential)
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v nasm >/dev/null 2>&1 || missing+=(nasm)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "serve.sh: installing ${missing[*]} with apt-get" >&2
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi

exec cargo run --release -p pacs-cli -- serve "$@"
