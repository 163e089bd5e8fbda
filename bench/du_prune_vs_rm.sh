#!/bin/bash
# du and prune against rm of one image (issue 11's goal), on a layout from
# `fixtures/generate.py bench` (it names img-050001); rm and prune on a `cp -al` copy with a
# real index.json. Prints "round case seconds peak-KiB load".
#   MODE=cold (default): every command with a fresh, empty OCILAYOUT_CACHE_DIR.
#   MODE=warm: one cache directory, filled first by an untimed `ls` of the layout and of the
#   copy (same path every round): every command runs on a warm reference cache.
# Usage: [MODE=warm] bench/du_prune_vs_rm.sh /tmp/pb/n100k [OCILAYOUT]
set -u
L=${1:?usage: du_prune_vs_rm.sh LAYOUT [OCILAYOUT]}
O=${2:-.venv/bin/ocilayout}
MODE=${MODE:-cold}
COPY=${TMPDIR:-/tmp}/du-vs-rm-copy
fresh_copy() {
  rm -rf $COPY && cp -al $L $COPY && rm $COPY/index.json && cp $L/index.json $COPY/index.json && sync
}
if [ $MODE = warm ]; then
  export OCILAYOUT_CACHE_DIR=$(mktemp -d /tmp/cachedir.XXXX)
  fresh_copy
  $O ls -q $L > /dev/null && $O ls -q $COPY > /dev/null
fi
for round in 1 2 3; do
  for case in rm du duq prune; do
    [ $MODE = cold ] && export OCILAYOUT_CACHE_DIR=$(mktemp -d /tmp/cachedir.XXXX)
    if [ $case = rm ] || [ $case = prune ]; then
      fresh_copy
    fi
    case $case in
      rm) cmd="$O rm -q $COPY img-050001" ;;
      prune) cmd="$O prune -q $COPY --keep-last 0 --reference img-050001" ;;
      du) cmd="$O du $L" ;;
      duq) cmd="$O du -q $L" ;;
    esac
    t=$( { /usr/bin/time -f "%e %M" $cmd > /dev/null; } 2>&1 | tail -1 )
    echo "$round $case $t load=$(cut -d' ' -f1 /proc/loadavg)"
    [ $MODE = cold ] && rm -rf $OCILAYOUT_CACHE_DIR
  done
done
[ $MODE = warm ] && rm -rf $OCILAYOUT_CACHE_DIR
exit 0
