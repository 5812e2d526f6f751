#!/usr/bin/env bash
# Load benchmark of `pacs import`, with the machine's limits and a peer measured in the same run.
#
#   bash benches/load/import.sh            # full run: ~5 GB of scratch space, a few minutes
#   REPS=1 MULTIFRAME_MB=200 bash benches/load/import.sh   # quick look
#
# Measures (each import into a fresh data directory, median of REPS runs):
#   - sequential write rate of the scratch disk: dd writing the same bytes with conv=fdatasync,
#     just before each large import (the disk of a shared VM drifts);
#   - `pacs import` of 10,000 small instances (64x64, ~9 KB): instances/s;
#   - the same corpus ingested by Orthanc (Debian's package, REST upload with 4 workers, by
#     orthanc_import.py; Orthanc fdatasyncs each file but commits its index with
#     synchronous=NORMAL), and copied with `cp -r` + `sync`;
#   - `pacs import` of 200 CT slices (512x512, 525 KB) and of one multi-frame object of
#     MULTIFRAME_MB megabytes: MB/s, and as a fraction of the dd rate;
#   - peak RSS of `pacs import` of a BIG_MB (default 2000) megabyte object.
# Writes a Markdown table on stdout and to benches/results/import-<UTC date>.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS=${REPS:-3}
MULTIFRAME_MB=${MULTIFRAME_MB:-1000}
BIG_MB=${BIG_MB:-2000}
WORK=${PACS_BENCH_WORK:-/tmp/pacs-bench}
mkdir -p "$WORK"
[ -x /usr/sbin/Orthanc ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc >/dev/null; }
service orthanc stop >/dev/null 2>&1 || true

cargo build --release -q -p pacs-cli -p pacs-benches
PACS=target/release/pacs
GEN=target/release/gen-corpus

now() { date +%s.%N; }
median() { python3 -c 'import sys,statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1])/float(sys.argv[2]):.3g}')" "$1" "$2"; }

[ -d "$WORK/small" ] || $GEN small "$WORK/small" >/dev/null
[ -d "$WORK/ct" ] || $GEN ct "$WORK/ct" >/dev/null
[ -d "$WORK/mf$MULTIFRAME_MB" ] || $GEN multiframe "$WORK/mf$MULTIFRAME_MB" "$MULTIFRAME_MB" >/dev/null
[ -d "$WORK/big$BIG_MB" ] || $GEN multiframe "$WORK/big$BIG_MB" "$BIG_MB" >/dev/null
bytes_of() { du -sb "$1" | cut -f1; }
files_of() { find "$1" -type f | wc -l; }

# dd_rate FOLDER: sequential write rate (MB/s) of the folder's bytes, concatenated and written by
# dd with fdatasync: the cost of making the same data durable as one stream. (Zeros from
# /dev/zero are not used: a virtual disk may store them cheaply.)
dd_rate() {
    sync
    find "$1" -type f -print0 | xargs -0 cat | dd of="$WORK/dd.bin" bs=1M iflag=fullblock conv=fdatasync 2>&1 | python3 -c '
import sys, re
line = [l for l in sys.stdin if "copied" in l][-1]
m = re.search(r"^([0-9]+) bytes.*copied, ([0-9.]+) s", line)
print(int(m.group(1)) / float(m.group(2)) / 1e6)'
    rm -f "$WORK/dd.bin"
}
# paired FOLDER: for each rep, dd of the folder's size then `pacs import` of it; prints the median
# import MB/s and the median ratio import/dd (the disk of a shared VM drifts between minutes).
paired() {
    local bytes rates=() ratios=() d t r
    bytes=$(bytes_of "$1")
    for _ in $(seq "$REPS"); do
        d=$(dd_rate "$1")
        t=$(run_import "$1")
        r=$(python3 -c "print($bytes/$t/1e6)")
        rates+=("$r"); ratios+=("$(python3 -c "print($r/$d)")")
    done
    echo "$(median "${rates[@]}") $(median "${ratios[@]}")"
}

# time_cmd CMD...: seconds of one run (page cache warm: the corpus was just read or written)
time_cmd() { local s e; sync; s=$(now); "$@" >/dev/null 2>&1; e=$(now); python3 -c "print($e-$s)"; }
# Every import and copy goes to a folder of its own, and the folders are removed only at the end:
# ext4 searches long for a free inode next to thousands of just-deleted ones (recently_deleted()
# in its inode allocator), which made a repetition that followed an `rm -rf` two to three times
# slower than the disk allows.
fresh() { mktemp -d "$WORK/run.XXXXXX"; }
rm -rf "$WORK"/run.* "$WORK/data"
run_import() { time_cmd "$PACS" --data-dir "$(fresh)" import "$1"; }
reps() { local out=(); for _ in $(seq "$REPS"); do out+=("$("$@")"); done; median "${out[@]}"; }

small_n=$(files_of "$WORK/small")
t_small=$(reps run_import "$WORK/small")
orthanc_small=$(python3 benches/load/orthanc_import.py "$WORK/small" --workers 4 --reps "$REPS")
orthanc_ct=$(python3 benches/load/orthanc_import.py "$WORK/ct" --workers 4 --reps "$REPS")
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
run_cp() { time_cmd bash -c "cp -r '$WORK/small' '$(fresh)' && sync"; }
t_cp=$(reps run_cp)
read -r ct_rate ct_ratio < <(paired "$WORK/ct")
read -r mf_rate mf_ratio < <(paired "$WORK/mf$MULTIFRAME_MB")
dd_1g=$(dd_rate "$WORK/mf$MULTIFRAME_MB")
rm -rf "$WORK/data"
big_rss_kb=$(python3 - "$PACS" "$WORK/data" "$WORK/big$BIG_MB" <<'PY'
import resource, subprocess, sys
subprocess.run([sys.argv[1], "--data-dir", sys.argv[2], "import", sys.argv[3]], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PY
)
rm -rf "$WORK"/run.* "$WORK/data"

small_rate=$(python3 -c "print($small_n/$t_small)")
orthanc_rate=$(field "$orthanc_small" instances_per_s)
orthanc_ct_rate=$(field "$orthanc_ct" mb_per_s)
cp_rate=$(python3 -c "print($small_n/$t_cp)")
out="benches/results/import-$(date -u +%Y%m%dT%H%M%SZ).md"
{
  echo "# pacs import, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r), scratch $WORK"
  echo
  echo "| measure | value | ratio |"
  echo "| --- | --- | --- |"
  printf '| dd of the %d MB object, conv=fdatasync (once more, after the imports) | %.0f MB/s | |\n' "$MULTIFRAME_MB" "$dd_1g"
  printf '| pacs import, %d small instances | %.0f inst/s | %sx Orthanc, %sx cp -r + sync |\n' "$small_n" "$small_rate" "$(ratio "$small_rate" "$orthanc_rate")" "$(ratio "$small_rate" "$cp_rate")"
  printf '| Orthanc REST upload (4 workers), same files | %.0f inst/s | |\n' "$orthanc_rate"
  printf '| cp -r + sync, same files | %.0f files/s | |\n' "$cp_rate"
  printf '| pacs import, 200 CT 512x512 | %.0f MB/s | %s of dd, %sx Orthanc |\n' "$ct_rate" "$(printf %.3g "$ct_ratio")" "$(ratio "$ct_rate" "$orthanc_ct_rate")"
  printf '| Orthanc REST upload (4 workers), same CT files | %.0f MB/s | |\n' "$orthanc_ct_rate"
  printf '| pacs import, one %d MB multi-frame | %.0f MB/s | %s of dd |\n' "$MULTIFRAME_MB" "$mf_rate" "$(printf %.3g "$mf_ratio")"
  printf '| peak RSS, pacs import of one %d MB object | %.0f MB | |\n' "$BIG_MB" "$(python3 -c "print($big_rss_kb/1024)")"
  echo
  echo "Medians of $REPS runs; corpus in the page cache; every import into a fresh data directory."
  echo "\"of dd\": median over reps of the import rate divided by the rate of dd writing the same bytes (conv=fdatasync) just before it."
} | tee "$out"
