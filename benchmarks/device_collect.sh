#!/bin/bash
# device calls 2+: wait for the trainings writing into $1 to end, then return the named runs in $OUT
# usage: collect.sh /root/q/cpu run1 run2 ...   (checkpoints left behind; files over 15 MB split)
dir=$1; shift; start=$(date +%s)
while pgrep -f -- "--out $dir" > /dev/null && [ $(( $(date +%s) - start )) -lt 560 ]; do sleep 5; done
cat $dir/../$(basename $dir).log; for f in $dir/*.log; do echo "$f: $(tail -c 200 $f)"; done
cd $dir && tar cf $OUT/$(basename $dir)-$1.tar --exclude=checkpoints "$@" && cd $OUT && \
  split -b 15M -d $(basename $dir)-$1.tar $(basename $dir)-$1.tar.part && rm $(basename $dir)-$1.tar; ls -la $OUT
