#!/bin/bash
# Before (9d8a5d9) and after (HEAD) of #15, interleaved, same machine, same run.
cd /work/main
B=target/release/lodge-bench
for round in 1 2; do
  for v in before after; do
    echo "=== fanout $v round $round" 
    $B fanout --no-build --lodge-bin /work/bench-bins/lodge-$v --targets native-4k-read-buffer,native,lodge --rooms 1 --clients 500 --rate 40 --secs 5 --repeat 3 2>&1 | tail -60
    echo "=== durable1 $v round $round"
    $B durable --no-build --lodge-bin /work/bench-bins/lodge-$v --targets native-4k-read-buffer,native,lodge --secs 5 --in-flight 1 2>&1 | tail -40
  done
done
echo BENCH-DONE
