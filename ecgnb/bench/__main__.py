"""Benchmarks (a script, not a test): ``python -m ecgnb.bench COMMAND``, one of softdtw, pretrain,
published, probe, checkpoint, flops, probe-memory, gpu-check, cache, rehearse.

- ``softdtw``: pairwise soft-DTW of one batch ``[B, T]`` with our numba kernel (CPU, all cores),
  our torch anti-diagonal path (CPU, and CUDA when present) and tslearn's ``cdist_soft_dtw``;
  wall time (best of ``--repeats``, compile/warm-up excluded), speed-up over tslearn and the
  largest element-wise relative difference.
- ``pretrain``: per backbone (``ecgnb.models.build`` defaults), training samples/s over
  ``--batches`` batches after one warm-up batch, and peak memory: CUDA
  ``max_memory_allocated``; CPU the peak resident set size of a fresh process per backbone
  (``resource.getrusage``), and its growth from the start of the warm-up batch (the memory
  training adds on top of the built model and the data).
  ``--before DIR`` adds the rate and peak memory of another ecgnb checkout (before a change).
- ``published``: our TS2Vec and TS-TCC against checkouts of the published code, side by side
  (:mod:`ecgnb.bench.published`), as shipped and with both sides flushing denormals.
- ``probe``: linear probing's encoder work on cached embeddings against re-encoding every epoch.
- ``checkpoint``: the size and write time of a training checkpoint, and the share of training
  time it costs at the default interval (:mod:`ecgnb.bench.checkpoint`).
- ``flops``: the machine's peak from a large matrix product (fp32, bf16 where native) and each
  backbone's training step as achieved FLOP/s and share of that peak (:mod:`ecgnb.bench.flops`).
- ``probe-memory``: peak resident memory of a linear-probe FCN cell's cached features and one head
  epoch, one fresh process per backbone (:mod:`ecgnb.bench.memory`).
- ``gpu-check``: every CUDA path on a GPU against the CPU (one PASS/FAIL/SKIP line per check),
  steady-state rates and the paper grids' projected GPU hours; one line and exit 0 without CUDA
  (:mod:`ecgnb.bench.gpu_check`).
- ``cache``: a windowed corpus built into the cache of windowed corpora, then loaded from it in a
  new process (:mod:`ecgnb.bench.corpus_cache`).
- ``rehearse``: a slice of the paper grid on paper-size data, extrapolated to the whole grid
  (:mod:`ecgnb.bench.rehearse`; ``make rehearse``).
Timing inputs of the other benchmarks are seeded synthetic windows (sines + noise, z-scored).
Output is a plain table.
"""
from __future__ import annotations

import argparse
from typing import Sequence

from ecgnb.bench.pretrain import (bench_pretrain, bench_pretrain_before, bench_probe,
                                  format_pretrain, format_probe)
from ecgnb.bench.projection import PAPER_TASK
from ecgnb.bench.softdtw import bench_softdtw, format_softdtw
from ecgnb.bench.timing import machine_line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ecgnb.bench",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sdtw = sub.add_parser("softdtw", help="pairwise soft-DTW: ours vs tslearn")
    sdtw.add_argument("--batch", type=int, default=64)
    sdtw.add_argument("--length", type=int, default=720)
    sdtw.add_argument("--repeats", type=int, default=3)
    sdtw.add_argument("--gamma", type=float, default=0.1)
    sdtw.add_argument("--paths", default="numba,torch,cuda,tslearn",
                      help="comma-separated subset of numba,torch,cuda (GPU only),tslearn")
    sdtw.add_argument("--torch-cpu-batch", type=int, default=16,
                      help="series used to time the torch path on CPU (it is the CUDA path)")
    pre = sub.add_parser("pretrain", help="training samples/s and peak memory per backbone")
    pre.add_argument("--backbones", default="ts2vec,tstcc,series2vec")
    pre.add_argument("--batches", type=int, default=5)
    pre.add_argument("--batch-size", type=int, default=64)
    pre.add_argument("--length", type=int, default=720)
    pre.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA if present)")
    pre.add_argument("--before", default=None,
                     help="another ecgnb checkout (e.g. before a change): its rate and peak "
                          "memory as extra columns")
    probe = sub.add_parser("probe", help="linear probing: cached embeddings vs re-encoding "
                                         "every epoch")
    probe.add_argument("--backbones", default="ts2vec,tstcc,series2vec")
    probe.add_argument("--windows", type=int, default=1024)
    probe.add_argument("--epochs", type=int, default=300, help="TrainConfig's default")
    probe.add_argument("--length", type=int, default=720)
    probe.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA if present)")
    ckpt = sub.add_parser("checkpoint", help="training checkpoints: size, write time, overhead")
    ckpt.add_argument("--backbones", default="ts2vec,tstcc,series2vec")
    ckpt.add_argument("--batches", type=int, default=3)
    ckpt.add_argument("--batch-size", type=int, default=64)
    ckpt.add_argument("--length", type=int, default=720)
    ckpt.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA if present)")
    pub = sub.add_parser("published", help="TS2Vec / TS-TCC training speed: ours vs the "
                                            "published code (checkouts you point to)")
    pub.add_argument("--ts2vec-code", default=None, help="checkout of yuezhihan/ts2vec")
    pub.add_argument("--tstcc-code", default=None, help="checkout of emadeldeen24/TS-TCC")
    pub.add_argument("--batches", type=int, default=10)
    pub.add_argument("--repeats", type=int, default=3,
                     help="seeds; each repeats the three measurements back to back")
    pub.add_argument("--batch-size", type=int, default=64)
    pub.add_argument("--length", type=int, default=720)
    pub.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA if present)")
    cache = sub.add_parser("cache", help="a windowed corpus: first build into the cache vs a "
                                         "later load, on the paper-size data")
    cache.add_argument("--corpus", default="ECG", choices=("ECG", "All"))
    rehearse = sub.add_parser("rehearse", help="a slice of params/grids/paper.yaml on paper-size "
                                               "data (generated under $ECGNB_DATA if missing), "
                                               "extrapolated to the whole grid")
    rehearse.add_argument("--batches", type=int, default=2, help="timed batches per SSL stage")
    rehearse.add_argument("--backbones", default="ts2vec,tstcc,series2vec")
    flops = sub.add_parser("flops", help="peak FLOP/s and each training step's share of it")
    flops.add_argument("--backbones", default="ts2vec,tstcc,series2vec")
    flops.add_argument("--batches", type=int, default=3)
    flops.add_argument("--batch-size", type=int, default=64)
    flops.add_argument("--length", type=int, default=720)
    flops.add_argument("--size", type=int, default=4096, help="matrix size of the peak")
    flops.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA if present)")
    mem = sub.add_parser("probe-memory", help="peak RSS of a linear-probe FCN cell")
    mem.add_argument("--backbones", default="ts2vec,series2vec")
    mem.add_argument("--windows", type=int, default=sum(PAPER_TASK.values()),
                     help="fragments in all three splits (default: the paper-size Fragment DB)")
    mem.add_argument("--length", type=int, default=720)
    mem.add_argument("--epochs", type=int, default=1, help="head epochs after caching")
    mem.add_argument("--feature-dtype", default="float32", help="float32 or float16")
    sub.add_parser("gpu-check", help="every CUDA path vs the CPU, rates, projected GPU hours")
    args = parser.parse_args(argv)
    if args.command == "published" and not (args.ts2vec_code or args.tstcc_code):
        parser.error("published: give --ts2vec-code and/or --tstcc-code")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "gpu-check":
        from ecgnb.bench.gpu_check import no_cuda_line

        if no_cuda_line() is not None:
            print(no_cuda_line())
            return 0
        from ecgnb.bench.gpu_suite import check_all

        return check_all()
    print(machine_line())
    names = [n.strip() for n in getattr(args, "backbones", "").split(",") if n.strip()]
    if args.command == "flops":
        from ecgnb.bench.flops import bench_flops, format_flops

        peaks, rows = bench_flops(names, args.batches, args.batch_size, args.length, args.device,
                                  args.size)
        print(format_flops(peaks, rows, args.batch_size, args.length))
    elif args.command == "probe-memory":
        from ecgnb.bench.memory import bench_probe_memory, format_probe_memory

        rows = bench_probe_memory(names, args.windows, args.length,
                                  {"feature_dtype": args.feature_dtype}, args.epochs)
        print(format_probe_memory(rows, args.length))
    elif args.command == "softdtw":
        paths = [p.strip() for p in args.paths.split(",") if p.strip()]
        rows = bench_softdtw(args.batch, args.length, args.gamma, args.repeats, paths,
                             torch_cpu_series=args.torch_cpu_batch)
        print(format_softdtw(rows, args.length, args.gamma))
    elif args.command == "published":
        from ecgnb.bench.published import bench_published, format_published

        code_dirs = {name: path for name, path in (("ts2vec", args.ts2vec_code),
                                                   ("tstcc", args.tstcc_code)) if path}
        rows = bench_published(code_dirs, args.batches, args.batch_size, args.length, args.device,
                               args.repeats)
        print(format_published(rows, args.batches, args.batch_size, args.length))
    elif args.command == "cache":
        from ecgnb.bench.corpus_cache import bench_cache, format_cache
        from ecgnb.bench.rehearse import paper_roots

        print(format_cache(bench_cache(paper_roots()["wesad"], args.corpus)))
    elif args.command == "rehearse":
        from ecgnb.bench.rehearse import main as rehearse

        rehearse(args.batches, [n.strip() for n in args.backbones.split(",") if n.strip()])
    elif args.command == "checkpoint":
        from ecgnb.bench.checkpoint import bench_checkpoint, format_checkpoint

        names = [n.strip() for n in args.backbones.split(",") if n.strip()]
        rows = bench_checkpoint(names, args.batches, args.batch_size, args.length, args.device)
        print(format_checkpoint(rows, args.batch_size, args.length))
    elif args.command == "probe":
        names = [n.strip() for n in args.backbones.split(",") if n.strip()]
        rows = bench_probe(names, args.windows, args.length, args.epochs, args.device)
        print(format_probe(rows, args.windows, args.length, args.epochs))
    else:
        names = [n.strip() for n in args.backbones.split(",") if n.strip()]
        rows = bench_pretrain(names, args.batches, args.batch_size, args.length, args.device)
        before = (bench_pretrain_before(args.before, names, args.batches, args.batch_size,
                                        args.length, args.device) if args.before else None)
        print(format_pretrain(rows, args.batch_size, args.length, before))


if __name__ == "__main__":
    raise SystemExit(main())
