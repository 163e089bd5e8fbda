#!/bin/bash
# du and prune against rm of one image (issue 11's goal), on a layout from
# `fixtures/generate.py bench` (it names img-050001); every command with a fresh, empty
# OCILAYOUT_CACHE_DIR; rm and prune on a `cp -al` copy with a real index.json. Prints
# "round case seconds peak-KiB load". Usage: bench/du_prune_vs_rm.sh /tmp/pb/n100k
set -u
L=${1:?usage: du_prune_vs_rm.sh LAYOUT [OCILAYOUT]}
O=${2:-.venv/bin/ocilayout}
for round in 1 2 3; do
  for case in rm du duq prune; do
    export OCILAYOUT_CACHE_DIR=$(mktemp -d /tmp/cachedir.XXXX)
    if [ $case = rm ] || [ $case = prune ]; then
      rm -rf ${TMPDIR:-/tmp}/du-vs-rm-copy && cp -al $L ${TMPDIR:-/tmp}/du-vs-rm-copy && rm ${TMPDIR:-/tmp}/du-vs-rm-copy/index.json && cp $L/index.json ${TMPDIR:-/tmp}/du-vs-rm-copy/index.json && sync
    fi
    case $case in
      rm) cmd="$O rm -q ${TMPDIR:-/tmp}/du-vs-rm-copy img-050001" ;;
      prune) cmd="$O prune -q ${TMPDIR:-/tmp}/du-vs-rm-copy --keep-last 0 --reference img-050001" ;;
      du) cmd="$O du $L" ;;
      duq) cmd="$O du -q $L" ;;
    esac
    t=$( { /usr/bin/time -f "%e %M" $cmd > /dev/null; } 2>&1 | tail -1 )
    echo "$round $case $t load=$(cut -d' ' -f1 /proc/loadavg)"
    rm -rf $OCILAYOUT_CACHE_DIR
  done
done
