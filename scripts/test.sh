#!/usr/bin/env bash
# Runs the whole test suite: the one command for CI and for people.
#
# On a fresh Debian or Ubuntu machine (as root, or as a user with sudo) it first installs what the
# tests need and is missing: DCMTK, curl, CMake, NASM, Python 3 with pip, and the Python packages pydicom and
# numpy with pylibjpeg (the independent reference of the integration tests), pynetdicom (a DICOM peer) and
# dicomweb-client (the DICOMweb client the tests drive the server with). Then it runs
#   cargo test --workspace --all-targets
#   cargo test --workspace --doc
# (every test binary, even after a failure) and exits non-zero if anything fails. It works from
# any current directory.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\n==> %s\n' "$*"; }

# shellcheck source=scripts/lib.sh
. scripts/lib.sh

python_ready() {
    python3 -c 'import pydicom, numpy, pynetdicom, dicomweb_client, pylibjpeg, openjpeg, libjpeg; assert int(pydicom.__version__.split(".")[0]) >= 3' >/dev/null 2>&1
}

# 1. System packages, only when something is missing.
missing=()
command -v dcmdump >/dev/null 2>&1 || missing+=(dcmdump)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if ! python_ready && ! python3 -m pip --version >/dev/null 2>&1; then
    missing+=(pip)
fi
command -v cc >/dev/null 2>&1 || missing+=(cc)
# CharLS (JPEG-LS) and libjpeg-turbo are built from source with CMake; NASM assembles
# libjpeg-turbo's SIMD code (without it the build still works, slower).
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v nasm >/dev/null 2>&1 || missing+=(nasm)
if [ "${#missing[@]}" -gt 0 ]; then
    say "missing: ${missing[*]}; installing with apt-get"
    packages=(dcmtk curl python3 python3-pip cmake nasm)
    command -v cc >/dev/null 2>&1 || packages+=(build-essential)
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"
else
    say "system packages present (dcmtk, curl, python3)"
fi

# 2. Python packages, only when pydicom (3.x), numpy, pynetdicom, dicomweb-client or pylibjpeg cannot be imported.
if python_ready; then
    say "python packages present: $(python3 -c 'import pydicom, numpy, pynetdicom, dicomweb_client; print("pydicom", pydicom.__version__, "numpy", numpy.__version__, "pynetdicom", pynetdicom.__version__, "dicomweb-client", dicomweb_client.__version__)')"
else
    say "installing pydicom, numpy, pynetdicom and dicomweb-client with pip"
    # pylibjpeg with its OpenJPEG and libjpeg plugins lets pydicom decode JPEG 2000, JPEG-LS and JPEG Lossless.
    pip_install=(python3 -m pip install --upgrade 'pydicom>=3' numpy pynetdicom dicomweb-client pylibjpeg pylibjpeg-openjpeg pylibjpeg-libjpeg)
    if ! output=$("${pip_install[@]}" 2>&1); then
        printf '%s\n' "$output"
        if grep -q 'externally-managed-environment' <<<"$output"; then
            say "pip refuses to install into the system Python; retrying with --break-system-packages"
            "${pip_install[@]}" --break-system-packages
        else
            echo "test.sh: pip install failed" >&2
            exit 1
        fi
    else
        printf '%s\n' "$output"
    fi
    python_ready || { echo "test.sh: pydicom 3, numpy, pynetdicom and dicomweb-client still cannot be imported" >&2; exit 1; }
fi

# 3. The tests.
if ! command -v cargo >/dev/null 2>&1; then
    echo "test.sh: cargo not found: install Rust (https://rustup.rs) first" >&2
    exit 1
fi
# --no-fail-fast: every test binary runs and every failure is listed, not just the first.
failed=()
say "cargo test --workspace --all-targets --no-fail-fast"
cargo test --workspace --all-targets --no-fail-fast || failed+=("cargo test --workspace --all-targets")
say "cargo test --workspace --doc --no-fail-fast"
cargo test --workspace --doc --no-fail-fast || failed+=("cargo test --workspace --doc")
if [ "${#failed[@]}" -gt 0 ]; then
    say "FAILED: ${failed[*]}"
    exit 1
fi
say "all tests passed"
