#!/usr/bin/env bash
# Codec benchmark: pacs transcode / pacs render against DCMTK and GDCM, same files, one run.
#
#   bash benches/load/codec.sh            # full run, about 10 minutes on 2 cores; writes
#                                         # benches/results/codec-<UTC timestamp>.md
#   bash benches/load/codec.sh --quick    # smoke run (10 slices, 20 frames, 2 reps), a minute;
#                                         # report in $PACS_BENCH_WORK only
#   QUICK=1 bash benches/load/codec.sh    # the same
#
# Measures wall time, MB/s of pixel data and cores used for encoding Explicit VR Little Endian to
# JPEG-LS lossless, JPEG 2000 lossless, RLE lossless and JPEG Extended (12-bit lossy, quality 85)
# and decoding back: `pacs transcode` vs DCMTK (dcmcjpls/dcmdjpls, dcmcrle/dcmdrle,
# dcmcjpeg/dcmdjpeg; no JPEG 2000) vs GDCM (gdcmconv; no 12-bit lossy JPEG), on 512x512 16-bit
# CT slices (one process per file) and on one multi-frame object; checks every output's pixels
# against the original and decodes every encoder's output with every decoder and pydicom. Then
# the latency of rendering a 512x512 slice: `pacs render` vs dcm2pnm / dcmj2pnm / dcml2pnm.
# See codec_bench.py for how. Installs what is missing: DCMTK and GDCM's tools (apt-get, through
# sudo when not root), pydicom, numpy, pylibjpeg with its libjpeg and openjpeg plugins, and
# Pillow (pip). Inputs are generated once into $PACS_BENCH_WORK (default /tmp/pacs-codec-bench).
#
# Environment: SLICES (50), FRAMES (100), REPS (3), RENDER_REPS (30), PACS_BENCH_WORK, OUT
# (report path), CARGO_TARGET_DIR, PACS_REVISION (source revision named in the report; default:
# git's HEAD, flagged when crates/ has uncommitted changes).
set -euo pipefail
SELF=$(realpath "$0")
cd "$(dirname "$SELF")/../.."
# shellcheck source=benches/load/lib.sh
. benches/load/lib.sh

QUICK=${QUICK:-0}
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h|--help) sed -n '2,24p' "$SELF"; exit 0 ;;
        *) echo "codec.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done
WORK=${PACS_BENCH_WORK:-/tmp/pacs-codec-bench}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
if [ "$QUICK" = 1 ]; then
    SLICES=${SLICES:-10}; FRAMES=${FRAMES:-20}; REPS=${REPS:-2}; RENDER_REPS=${RENDER_REPS:-5}; MODE=quick
    OUT=${OUT:-$WORK/codec-quick-$STAMP.md}
else
    SLICES=${SLICES:-50}; FRAMES=${FRAMES:-100}; REPS=${REPS:-3}; RENDER_REPS=${RENDER_REPS:-30}; MODE=full
    OUT=${OUT:-benches/results/codec-$STAMP.md}
fi
mkdir -p "$WORK"

# Outputs of the tools (several hundred MB in a full run) live here and go at the end.
SCRATCH=$(mktemp -d "$WORK/run.XXXXXX")
cleanup() { rm -rf "$SCRATCH"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


# DCMTK and GDCM from Debian, called by absolute path.
if [ ! -x /usr/bin/dcmcjpls ] || [ ! -x /usr/bin/dcmdrle ] || [ ! -x /usr/bin/dcmcjpeg ] || [ ! -x /usr/bin/dcm2pnm ] || [ ! -x /usr/bin/dcml2pnm ] || [ ! -x /usr/bin/gdcmconv ]; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dcmtk libgdcm-tools >/dev/null
fi
python3 -c 'import pydicom, numpy, pylibjpeg, libjpeg, openjpeg, PIL' 2>/dev/null ||
    python3 -m pip install --quiet pydicom numpy pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pillow

cargo build --release -q -p pacs-cli
PACS=$(realpath "${CARGO_TARGET_DIR:-target}/release/pacs")
# pacs reads no configuration or archive here; an empty data directory makes sure of it.
export PACS_DATA_DIR="$SCRATCH/pacs-data"
if [ -z "${PACS_REVISION:-}" ]; then
    PACS_REVISION=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    git diff --quiet HEAD -- crates Cargo.toml Cargo.lock 2>/dev/null || PACS_REVISION="$PACS_REVISION + uncommitted changes"
fi

status=0
python3 benches/load/codec_bench.py --pacs "$PACS" --work "$WORK" --scratch "$SCRATCH" --slices "$SLICES" \
    --frames "$FRAMES" --reps "$REPS" --render-reps "$RENDER_REPS" --mode "$MODE" \
    --revision "$PACS_REVISION" --out "$OUT" || status=$?
if [ "$status" = 2 ]; then
    echo "codec.sh: the run finished with problems (listed in $OUT)" >&2
fi
exit "$status"
