"""Time one `compute` call (forward + gradient, float32, the default TripletLoss) from
Python, on the batch `metric-loss bench` uses: n rows in classes of 4, gaussian rows
L2-normalised. Prints one JSON line per size, beside which `metric-loss bench --n N --d D`
gives the Rust figure.

    python bench.py --sizes 1024,4096 --d 128 [--reps 50]
    METRIC_LOSS_THREADS=1 python bench.py ...      # one thread, like `bench --threads 1`
"""

import argparse
import json
import time

import numpy as np

import metric_loss


def median_ms(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1024,4096")
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args()
    loss = metric_loss.TripletLoss()
    rng = np.random.default_rng(42)
    for n in (int(s) for s in args.sizes.split(",")):
        x = rng.standard_normal((n, args.d))
        x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
        y = np.arange(n) // 4
        fwd = median_ms(lambda: loss(y, x), args.warmup, args.reps)
        fwd_bwd = median_ms(lambda: loss.compute(y, x), args.warmup, args.reps)
        print(json.dumps({"n": n, "d": args.d, "fwd_ms": round(fwd, 4), "fwd_bwd_ms": round(fwd_bwd, 4)}))


if __name__ == "__main__":
    main()
