#!/usr/bin/env bash
# DICOMweb load benchmark: `pacs serve` and Orthanc with its DICOMweb plugin on loopback, same
# corpus, same HTTP client, one run.
#
#   bash benches/load/dicomweb.sh            # full run, about 10 minutes on 2 cores; writes
#                                            # benches/results/dicomweb-<UTC timestamp>.md
#   bash benches/load/dicomweb.sh --quick    # smoke run (1 rep, 2,000 small instances, 50 requests
#                                            # per latency series), a minute or two; report in
#                                            # $PACS_BENCH_WORK only
#   QUICK=1 bash benches/load/dicomweb.sh    # the same
#
# Measures, with 1 and 16 concurrent clients: STOW-RS ingest (instances/s, MB/s; 10 instances per
# multipart request, every repetition into an empty archive, stored counts checked), QIDO-RS study
# search latency (median, p95), WADO-RS retrieve of a whole study (MB/s, answers checked byte for
# byte), instance /metadata latency; also fsync calls per stored instance and peak server RSS. See
# dicomweb_bench.py for how. Installs what is missing: Orthanc and its DICOMweb plugin (apt-get,
# through sudo when not root), pydicom (pip). Builds pacs in release mode and generates the corpus
# with the benches' gen-corpus (kept in $PACS_BENCH_WORK, default /tmp/pacs-dicomweb-bench).
#
# Environment: REPS (STOW-RS repetitions, 3), RETRIEVE_REPS (5), QUERIES (200), CLIENTS (16),
# BATCH (10), PACS_BENCH_WORK, OUT (report path), CARGO_TARGET_DIR, PACS_REVISION (source revision
# named in the report; default: git's HEAD, flagged when crates/ has uncommitted changes).
set -euo pipefail
SELF=$(realpath "$0")
cd "$(dirname "$SELF")/../.."
# shellcheck source=benches/load/lib.sh
. benches/load/lib.sh

QUICK=${QUICK:-0}
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h|--help) sed -n '2,22p' "$SELF"; exit 0 ;;
        *) echo "dicomweb.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done
WORK=${PACS_BENCH_WORK:-/tmp/pacs-dicomweb-bench}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
if [ "$QUICK" = 1 ]; then
    REPS=${REPS:-1}; RETRIEVE_REPS=${RETRIEVE_REPS:-2}; QUERIES=${QUERIES:-50}; SMALL_LIMIT=2000; MODE=quick
    OUT=${OUT:-$WORK/dicomweb-quick-$STAMP.md}
else
    REPS=${REPS:-3}; RETRIEVE_REPS=${RETRIEVE_REPS:-5}; QUERIES=${QUERIES:-200}; SMALL_LIMIT=0; MODE=full
    OUT=${OUT:-benches/results/dicomweb-$STAMP.md}
fi
CLIENTS=${CLIENTS:-16}
BATCH=${BATCH:-10}
mkdir -p "$WORK"

servers_stopped_on_exit dicomweb.sh

# Orthanc and its DICOMweb plugin from Debian.
if [ ! -x /usr/sbin/Orthanc ] || ! dpkg -L orthanc-dicomweb 2>/dev/null | grep -q '\.so'; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb >/dev/null
    # The package starts its own service (ports 4242/8042) where it can: this run must not leave it running.
    as_root service orthanc stop >/dev/null 2>&1 || true
fi
if pgrep -x Orthanc >/dev/null 2>&1; then
    echo "dicomweb.sh: note: an Orthanc not started by this script is running and competes for the CPU" >&2
fi
python3 -c 'import pydicom' 2>/dev/null || python3 -m pip install --quiet pydicom

cargo build --release -q -p pacs-cli -p pacs-benches
PACS=${CARGO_TARGET_DIR:-target}/release/pacs
GEN=${CARGO_TARGET_DIR:-target}/release/gen-corpus
if [ -z "${PACS_REVISION:-}" ]; then
    PACS_REVISION=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    git diff --quiet HEAD -- crates Cargo.toml Cargo.lock 2>/dev/null || PACS_REVISION="$PACS_REVISION + uncommitted changes"
fi

# The corpus: 10,000 small instances (64x64, ~9 KB, 200 studies of 50) and 200 CT slices (512x512,
# 525 KB, 4 studies of 50), regenerated when incomplete.
[ "$(find "$WORK/small" -name '*.dcm' 2>/dev/null | wc -l)" = 10000 ] || { rm -rf "$WORK/small"; $GEN small "$WORK/small" >/dev/null; }
[ "$(find "$WORK/ct" -name '*.dcm' 2>/dev/null | wc -l)" = 200 ] || { rm -rf "$WORK/ct"; $GEN ct "$WORK/ct" >/dev/null; }

status=0
python3 benches/load/dicomweb_bench.py --pacs "$PACS" --small "$WORK/small" --ct "$WORK/ct" --out "$OUT" \
    --work "$RUN/work" --piddir "$RUN/pids" --reps "$REPS" --retrieve-reps "$RETRIEVE_REPS" \
    --queries "$QUERIES" --clients "$CLIENTS" --batch "$BATCH" --small-limit "$SMALL_LIMIT" \
    --mode "$MODE" --revision "$PACS_REVISION" || status=$?
if [ "$status" = 2 ]; then
    echo "dicomweb.sh: the run finished with problems (listed in $OUT)" >&2
fi
exit "$status"
