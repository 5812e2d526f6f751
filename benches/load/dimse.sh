#!/usr/bin/env bash
# DIMSE load benchmark: `pacs serve` and Orthanc on loopback, same corpus, same clients, one run.
#
#   bash benches/load/dimse.sh            # full run, about 10 minutes on 2 cores; writes
#                                         # benches/results/dimse-<UTC timestamp>.md
#   bash benches/load/dimse.sh --quick    # smoke run (1 rep, 2,000 small instances, 50 queries),
#                                         # a minute or two; report in $PACS_BENCH_WORK only
#   QUICK=1 bash benches/load/dimse.sh    # the same
#
# Measures C-STORE ingest (small instances with 1 and 8 associations, 512x512 CT), study-level
# C-FIND latency (median, p95, as the client sees it and the server's own time from a loopback
# packet capture), C-GET and C-MOVE of a whole study, 100 associations held at once,
# and peak server RSS; see dimse_bench.py for how. Installs what is missing: DCMTK, Orthanc,
# strace and tcpdump (apt-get, through sudo when not root), pydicom and pynetdicom (pip).
# Builds pacs in release mode and generates the corpus with the benches' gen-corpus (kept in $PACS_BENCH_WORK, default
# /tmp/pacs-dimse-bench, for the next run).
#
# Environment: REPS (ingest repetitions, 3), RETRIEVE_REPS (5), QUERIES (200), HOLD (100),
# PACS_BENCH_WORK, OUT (report path), CARGO_TARGET_DIR, PACS_REVISION (source revision named in
# the report; default: git's HEAD, flagged when crates/ has uncommitted changes).
set -euo pipefail
SELF=$(realpath "$0")
cd "$(dirname "$SELF")/../.."
# shellcheck source=benches/load/lib.sh
. benches/load/lib.sh

QUICK=${QUICK:-0}
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h|--help) sed -n '2,21p' "$SELF"; exit 0 ;;
        *) echo "dimse.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done
WORK=${PACS_BENCH_WORK:-/tmp/pacs-dimse-bench}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
if [ "$QUICK" = 1 ]; then
    REPS=${REPS:-1}; RETRIEVE_REPS=${RETRIEVE_REPS:-2}; QUERIES=${QUERIES:-50}; SMALL_LIMIT=2000; MODE=quick
    OUT=${OUT:-$WORK/dimse-quick-$STAMP.md}
else
    REPS=${REPS:-3}; RETRIEVE_REPS=${RETRIEVE_REPS:-5}; QUERIES=${QUERIES:-200}; SMALL_LIMIT=0; MODE=full
    OUT=${OUT:-benches/results/dimse-$STAMP.md}
fi
HOLD=${HOLD:-100}
mkdir -p "$WORK"

servers_stopped_on_exit dimse.sh

# DCMTK and Orthanc from Debian. Called by absolute path: pip's pynetdicom can put tools with the
# same names (storescu, getscu, ...) earlier on PATH.
installed_orthanc=0
# strace counts flushes per instance; tcpdump times the servers' own C-FIND on loopback.
if [ ! -x /usr/bin/storescu ] || [ ! -x /usr/bin/storescp ] || [ ! -x /usr/bin/getscu ] || [ ! -x /usr/bin/movescu ] || [ ! -x /usr/sbin/Orthanc ] \
    || [ ! -x /usr/bin/strace ] || [ ! -x /usr/bin/tcpdump ]; then
    [ -x /usr/sbin/Orthanc ] || installed_orthanc=1
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dcmtk orthanc strace tcpdump >/dev/null
fi
if [ "$installed_orthanc" = 1 ]; then
    # The package starts its own service (port 4242/8042) where it can: this run must not leave it running.
    as_root service orthanc stop >/dev/null 2>&1 || true
fi
if pgrep -x Orthanc >/dev/null 2>&1; then
    echo "dimse.sh: note: an Orthanc not started by this script is running and competes for the CPU" >&2
fi
python3 -c 'import pydicom, pynetdicom' 2>/dev/null || python3 -m pip install --quiet pydicom pynetdicom

cargo build --release -q -p pacs-cli -p pacs-benches
PACS=${CARGO_TARGET_DIR:-target}/release/pacs
GEN=${CARGO_TARGET_DIR:-target}/release/gen-corpus
# The source the binary was built from, for the report.
if [ -z "${PACS_REVISION:-}" ]; then
    PACS_REVISION=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    git diff --quiet HEAD -- crates Cargo.toml Cargo.lock 2>/dev/null || PACS_REVISION="$PACS_REVISION + uncommitted changes"
fi

# The corpus: 10,000 small instances (64x64, ~9 KB, 200 studies) and 200 CT slices (512x512,
# 525 KB, 4 studies of 50), regenerated when incomplete.
[ "$(find "$WORK/small" -name '*.dcm' 2>/dev/null | wc -l)" = 10000 ] || { rm -rf "$WORK/small"; $GEN small "$WORK/small" >/dev/null; }
[ "$(find "$WORK/ct" -name '*.dcm' 2>/dev/null | wc -l)" = 200 ] || { rm -rf "$WORK/ct"; $GEN ct "$WORK/ct" >/dev/null; }

limit=()
[ "$SMALL_LIMIT" = 0 ] || limit=(--small-limit "$SMALL_LIMIT")
status=0
python3 benches/load/dimse_bench.py --pacs "$PACS" --small "$WORK/small" --ct "$WORK/ct" --out "$OUT" \
    --work "$RUN/work" --piddir "$RUN/pids" --reps "$REPS" --retrieve-reps "$RETRIEVE_REPS" \
    --queries "$QUERIES" --hold "$HOLD" --mode "$MODE" --revision "$PACS_REVISION" "${limit[@]}" || status=$?
if [ "$status" = 2 ]; then
    echo "dimse.sh: the run finished with problems (listed in $OUT)" >&2
fi
exit "$status"
