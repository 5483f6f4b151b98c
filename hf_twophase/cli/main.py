"""`hf-twophase` command line: each sub-command is a thin shell over the library, with `--json` for scripts."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from hf_twophase.cli.arguments import (
    DefaultsHelpFormatter,
    non_negative_float,
    non_negative_int,
    port_number,
    positive_float,
    positive_int,
)
from hf_twophase.errors import HFTwoPhaseError, SelectionError
from hf_twophase.method.clustering import DEFAULT_THRESHOLD, ClusteringConfig
from hf_twophase.method.similarity import DEFAULT_TOP_K


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--top-k", type=positive_int, default=DEFAULT_TOP_K,
                        help="k of Eq. 1 (largest gaps averaged).")
    parser.add_argument("--threshold", type=non_negative_float, default=DEFAULT_THRESHOLD,
                        help="hierarchical: merge while the average Eq. 1 distance is <= this.")
    parser.add_argument("--method", choices=["hierarchical", "kmeans"], default="hierarchical")
    parser.add_argument("--n-clusters", type=positive_int, default=None, help="kmeans: number of clusters.")


def _cluster_config(args: argparse.Namespace) -> ClusteringConfig:
    return ClusteringConfig(method=args.method, top_k=args.top_k, threshold=args.threshold, n_clusters=args.n_clusters)


def _add_cluster(sub) -> None:
    p = _subcommand(sub, "cluster", help="cluster the models of a records file by Eq. 1 similarity")
    p.add_argument("--records", required=True, help="records file (CSV or Parquet)")
    _add_cluster_options(p)
    p.set_defaults(func=_cmd_cluster)


def _cmd_cluster(args: argparse.Namespace) -> dict:
    from hf_twophase.method.phase1 import Phase1
    from hf_twophase.records.matrix import PerformanceMatrix

    matrix = PerformanceMatrix.read(args.records)
    phase1 = Phase1.from_matrix(matrix, config=_cluster_config(args))
    out = phase1.clustering.to_dict()
    if not args.json:
        c = phase1.clustering
        print(f"{len(c.models)} models, {len(phase1.benchmarks)} benchmarks -> {len(c.clusters)} clusters "
              f"({len(c.non_singleton)} with 2+ members), silhouette {c.silhouette}")
        for members, rep in zip(c.clusters, c.representatives, strict=False):
            if rep is not None:
                print(f"  [{len(members)}] representative {rep}")
    return out


def _add_recall(sub) -> None:
    p = _subcommand(sub, "recall", help="coarse recall (phase 1) of the top-K models for a target dataset")
    p.add_argument("--records", required=True, help="records file (CSV or Parquet)")
    p.add_argument("--proxy", required=True, help="proxy-score file: model, dataset, method, score[, cost]")
    p.add_argument("--target", required=True, help="target dataset; its rows in --records are left out")
    p.add_argument("--k", type=positive_int, default=10, help="how many models to recall")
    p.add_argument("--proxy-method", default=None, help="which proxy method to read when the file has several")
    p.add_argument("--normaliser", default="auto", choices=["auto", "exp", "minmax", "rank"],
                   help="paper variant: auto is exp for LEEP, min-max otherwise")
    p.add_argument("--variant", default="robust", choices=["robust", "paper"],
                   help="robust prior (re-ranked by the proxy with --proxy-weight > 0), or the paper's Eq. 2-4")
    p.add_argument("--proxy-weight", type=non_negative_float, default=None,
                   help="robust: weight of the standardised proxy (default: the library's, 0 = prior only)")
    p.add_argument("--target-temperature", type=positive_float, default=None,
                   help="robust: weight the benchmarks by how their scores of the proxy-scored shortlist agree with "
                        "the proxy on the target (softmax at this temperature; default: every benchmark alike)")
    _add_cluster_options(p)
    p.set_defaults(func=_cmd_recall)


def _cmd_recall(args: argparse.Namespace) -> dict:
    from hf_twophase.method.phase1 import Phase1, proxy_lookup
    from hf_twophase.method.recall import RecallConfig, normaliser_for
    from hf_twophase.records.matrix import PerformanceMatrix, read_proxy_scores

    matrix = PerformanceMatrix.read(args.records)
    weight = {} if args.proxy_weight is None else {"proxy_weight": args.proxy_weight}
    phase1 = Phase1.from_matrix(matrix, target=args.target, config=_cluster_config(args),
                                recall=RecallConfig(variant=args.variant, target_temperature=args.target_temperature,
                                                    **weight))
    needed = phase1.to_score(args.k)
    proxy: dict[str, float] = {}
    method = args.proxy_method
    if needed:
        table = read_proxy_scores(args.proxy, dataset=args.target, models=needed, method=args.proxy_method)
        available, method = proxy_lookup(table, args.target, args.proxy_method)
        if not available:
            raise HFTwoPhaseError(f"file {args.proxy}: no proxy score for target '{args.target}'; expected rows "
                                  f"with dataset == '{args.target}'")
        proxy = {m: available[m] for m in needed if m in available}
    result = phase1.recall(proxy, k=args.k, normaliser=normaliser_for(args.normaliser, method))
    out = {"target": args.target, **result.to_dict()}
    if result.benchmark_weights:
        out["benchmark_weights"] = result.benchmark_weights
    if not args.json:
        total = len(phase1.clustering.models)
        print(f"target {args.target}: {result.note}; recalled {len(result.recalled)} of {total}")
        for rank, model in enumerate(result.recalled, 1):
            print(f"  {rank:>2}. {model}  ({result.scores[model]:.4f})")
    return out


def _cmd_replay(args: argparse.Namespace) -> dict:
    from hf_twophase.cli.replay import replay_command

    return replay_command(args)


def _add_synth(sub) -> None:
    p = _subcommand(sub, "synth", help="write a synthetic records file (and proxy scores) for demos and tests")
    p.add_argument("--out", required=True, help="records file to write (.csv or .parquet)")
    p.add_argument("--proxy-out", default=None, help="also write LEEP-like proxy scores here")
    p.add_argument("--models", type=positive_int, default=40)
    p.add_argument("--benchmarks", type=positive_int, default=12)
    p.add_argument("--families", type=positive_int, default=6)
    p.add_argument("--steps", type=positive_int, default=5)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.set_defaults(func=_cmd_synth)


def _cmd_synth(args: argparse.Namespace) -> dict:
    from pathlib import Path

    from hf_twophase.records.matrix import PerformanceMatrix
    from hf_twophase.records.synthetic import synthetic_proxy, synthetic_records

    records = synthetic_records(args.models, args.benchmarks, n_families=args.families, steps=args.steps,
                                seed=args.seed)
    path = PerformanceMatrix(records, source="synthetic").write(args.out)
    out = {"records": str(path), "models": args.models, "benchmarks": args.benchmarks, "rows": len(records)}
    if args.proxy_out:
        proxy = synthetic_proxy(records, seed=args.seed)
        Path(args.proxy_out).parent.mkdir(parents=True, exist_ok=True)
        proxy.to_csv(args.proxy_out, index=False) if args.proxy_out.endswith(".csv") else proxy.to_parquet(
            args.proxy_out, index=False)
        out["proxy"] = args.proxy_out
    if not args.json:
        print(f"wrote {out['rows']} synthetic records to {path}" + (f" and proxy scores to {args.proxy_out}"
                                                                     if args.proxy_out else ""))
    return out


def _add_build_matrix(sub) -> None:
    p = _subcommand(sub, "build-matrix", help="fine-tune every model on every benchmark and record the curves")
    p.add_argument("--models", nargs="+", required=True, help="Hub ids, local folders or timm 'local-dir:' names")
    p.add_argument("--benchmarks", nargs="+", required=True, help="registered benchmark names (e.g. digits)")
    p.add_argument("--out", required=True, help="output folder: one file per cell, then records.parquet")
    p.add_argument("--epochs", type=positive_float, default=3.0)
    p.add_argument("--lr", type=positive_float, default=5e-5)
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--evals-per-epoch", type=positive_int, default=1)
    p.add_argument("--subset", type=positive_int, default=None,
                   help="training examples per benchmark (default: its spec)")
    p.add_argument("--eval-subset", type=positive_int, default=None)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    p.add_argument("--overwrite", action="store_true",
                   help="retrain finished cells whose settings differ from these (default: refuse and name them)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="train cells in N local processes, one GPU each when there are GPUs")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="train only this worker's share of the cells (for schedulers: Slurm, Ray, ...)")
    p.add_argument("--ray", action="store_true", help="run the cells as Ray tasks (pip install 'hf-twophase[ray]')")
    p.add_argument("--ray-address", default=None, help="Ray cluster to join (default: start a local Ray)")
    p.add_argument("--push", default=None, metavar="REPO_ID",
                   help="then publish the records as this Hub dataset, merged with what it already holds")
    p.set_defaults(func=_cmd_build_matrix)


def _cmd_build_matrix(args: argparse.Namespace) -> dict:
    from hf_twophase.matrix_build.builder import BuildConfig, build_matrix

    config = BuildConfig(epochs=args.epochs, learning_rate=args.lr, batch_size=args.batch_size,
                         evals_per_epoch=args.evals_per_epoch, train_subset=args.subset, eval_subset=args.eval_subset,
                         seed=args.seed, use_cpu=args.cpu)
    shard = None
    if args.shard:
        try:
            index, count = (int(x) for x in args.shard.split("/"))
        except ValueError:
            raise SelectionError(f"--shard takes I/N (e.g. 0/4), got {args.shard!r}") from None
        shard = (index, count)
    if args.ray:
        from hf_twophase.matrix_build.builder import build_matrix_on_ray

        init = {"address": args.ray_address} if args.ray_address else {}
        matrix = build_matrix_on_ray(args.models, args.benchmarks, args.out, config, progress=not args.json,
                                     overwrite=args.overwrite, **init)
    elif args.workers and args.workers > 1:
        from hf_twophase.matrix_build.benchmarks import get_benchmark
        from hf_twophase.matrix_build.builder import cells_to_train, collect, run_workers
        from hf_twophase.trainer.candidates import Candidate

        grid = [(m, Candidate.of(m).name, get_benchmark(b)) for m in args.models for b in args.benchmarks]
        cells_to_train(grid, Path(args.out), config, overwrite=args.overwrite)  # refuse before any worker starts
        argv = _worker_argv(args)
        codes = run_workers(argv, args.workers)
        matrix = collect(args.out)
        if any(codes):
            print(f"warning: {sum(c != 0 for c in codes)} worker(s) exited with an error; their finished cells are "
                  "kept, re-run the command to train the rest", file=sys.stderr)
    else:
        matrix = build_matrix(args.models, args.benchmarks, args.out, config, progress=not args.json, shard=shard,
                              overwrite=args.overwrite)
    out = {"records": str(Path(args.out) / "records.parquet"), "models": matrix.models, "benchmarks": matrix.datasets,
           "rows": len(matrix)}
    if args.push:
        provenance = (f"Built with `hf-twophase build-matrix` (epochs {config.epochs}, learning rate "
                      f"{config.learning_rate}, batch size {config.batch_size}, {config.evals_per_epoch} "
                      f"evaluation(s) per epoch, seed {config.seed}) on benchmarks {', '.join(args.benchmarks)}.")
        from hf_twophase.hub.client import push_matrix

        out["pushed"] = {"repo_id": args.push, "commit": push_matrix(matrix, args.push, provenance=provenance)}
    if not args.json:
        print(f"{len(matrix.models)} models x {len(matrix.datasets)} benchmarks -> {out['records']}")
        print(matrix.final_scores().round(4).to_string())
        if args.push:
            print(f"pushed to the Hub dataset {args.push} (commit {out['pushed']['commit'][:10]})")
    return out


def _add_import(sub) -> None:
    p = _subcommand(sub, "import", help="turn published results (plasware, transfergraph, quicktune) into records")
    p.add_argument("source", choices=["plasware", "transfergraph", "quicktune"])
    p.add_argument("source_dir", help="folder holding the source's files under their original names")
    p.add_argument("--out", required=True, help="records file to write (.csv or .parquet)")
    p.add_argument("--proxy-out", default=None, help="also write the source's proxy scores here")
    p.set_defaults(func=_cmd_import)


def _cmd_import(args: argparse.Namespace) -> dict:
    from hf_twophase.records.importers import import_results
    from hf_twophase.records.matrix import PerformanceMatrix

    records, proxy = import_results(args.source, args.source_dir)
    matrix = PerformanceMatrix(records, source=f"{args.source}:{args.source_dir}")  # validated like any records
    path = matrix.write(args.out)
    out = {"records": str(path), "rows": len(matrix), "models": len(matrix.models), "datasets": len(matrix.datasets),
           "skipped_rows": records.attrs.get("skipped_rows", 0) + (proxy.attrs.get("skipped_rows", 0) if
                                                                    proxy is not None else 0)}
    if args.proxy_out:
        if proxy is None:
            raise SelectionError(f"the {args.source} files hold no proxy scores; drop --proxy-out")
        proxy_path = Path(args.proxy_out)
        proxy_path.parent.mkdir(parents=True, exist_ok=True)
        if proxy_path.suffix.lower() == ".parquet":
            proxy.to_parquet(proxy_path, index=False)
        else:
            proxy.to_csv(proxy_path, index=False)
        out["proxy"] = str(proxy_path)
        out["proxy_rows"] = len(proxy)
    if not args.json:
        print(f"{out['models']} models x {out['datasets']} datasets, {out['rows']} records -> {path}"
              + (f"; {out['proxy_rows']} proxy scores -> {out['proxy']}" if args.proxy_out else "")
              + (f" ({out['skipped_rows']} incomplete rows of the source skipped)" if out["skipped_rows"] else ""))
    return out


def _add_matrix(sub) -> None:
    p = sub.add_parser("matrix", help="inspect a performance matrix, or regenerate the packaged ones")
    actions = p.add_subparsers(dest="action", required=True)
    info = _subcommand(actions, "info", help="what a matrix holds and where it comes from")
    info.add_argument("matrix", nargs="?", default=None,
                      help="a records file or a Hub dataset id (default: the packaged matrix of --task)")
    info.add_argument("--task", default="text-classification", help="whose packaged matrix to show")
    info.set_defaults(func=_cmd_matrix_info)
    regen = _subcommand(actions, "regenerate-published",
                        help="convert the paper's published matrices into the packaged Parquet files")
    regen.add_argument("checkout", help="a checkout of github.com/plasware/two-phase-selection at the pinned commit")
    regen.add_argument("--out", default=None, help="folder to write to (default: the package's own matrices/)")
    regen.set_defaults(func=_cmd_matrix_regenerate)
    embedded = _subcommand(actions, "regenerate-embedded",
                           help="build the embedded offline repository from scratch and write its shipped matrix")
    embedded.add_argument("--task", required=True, choices=["image-classification", "text-classification"])
    embedded.add_argument("--root", required=True, help="an empty folder to build the repository in")
    embedded.add_argument("--out", default=None, help="folder to write to (default: the package's own matrices/)")
    embedded.set_defaults(func=_cmd_matrix_regenerate_embedded)


def _cmd_matrix_info(args: argparse.Namespace) -> dict:
    from hf_twophase.records.matrix import PerformanceMatrix
    from hf_twophase.records.published import describe_provenance
    from hf_twophase.selector import resolve_matrix
    from hf_twophase.tasks import check_task

    matrix = PerformanceMatrix.default(check_task(args.task)) if args.matrix is None else resolve_matrix(args.matrix)
    final = matrix.final_scores()
    steps = int(matrix.records.groupby(["model", "dataset"])["step"].nunique().max())
    out = {"source": matrix.source, "models": len(matrix.models), "model_ids": list(matrix.models),
           "datasets": matrix.datasets,
           "filled_cells": int(final.notna().to_numpy().sum()), "cells": int(final.size),
           "learning_curves": steps > 1, "provenance": matrix.provenance}
    if not args.json:
        print(f"{matrix.source}: {out['models']} models x {len(out['datasets'])} datasets, {out['filled_cells']} of "
              f"{out['cells']} cells filled, {'learning curves' if steps > 1 else 'final scores only (no curves)'}")
        print(f"  datasets: {', '.join(out['datasets'])}")
        print(f"  models: {', '.join(out['model_ids'])}")
        if matrix.provenance:
            print(f"  provenance: {describe_provenance(matrix.provenance)}")
    return out


def _cmd_matrix_regenerate(args: argparse.Namespace) -> dict:
    from hf_twophase.records.published import regenerate

    written = {name: str(path) for name, path in regenerate(args.checkout, args.out).items()}
    if not args.json:
        for path in written.values():
            print(f"wrote {path}")
    return written


def _cmd_matrix_regenerate_embedded(args: argparse.Namespace) -> dict:
    from hf_twophase.matrix_build.defaults import regenerate_embedded

    written = [str(p) for p in regenerate_embedded(args.task, Path(args.root), args.out and Path(args.out),
                                                   progress=not args.json)]
    if not args.json:
        for path in written:
            print(f"wrote {path}")
    return {"written": written}


def _worker_argv(args: argparse.Namespace) -> list[str]:
    """The build-matrix arguments a worker needs: everything but --workers, --push and --json."""
    argv = ["--models", *args.models, "--benchmarks", *args.benchmarks, "--out", args.out,
            "--epochs", str(args.epochs), "--lr", str(args.lr), "--batch-size", str(args.batch_size),
            "--evals-per-epoch", str(args.evals_per_epoch), "--seed", str(args.seed), "--json"]
    if args.subset:
        argv += ["--subset", str(args.subset)]
    if args.eval_subset:
        argv += ["--eval-subset", str(args.eval_subset)]
    if args.cpu:
        argv.append("--cpu")
    if args.overwrite:
        argv.append("--overwrite")
    return argv


def _add_hub_server(sub) -> None:
    p = _subcommand(sub, "hub-server", help="serve a local, Hub-compatible HTTP API from a folder (air-gapped teams)")
    p.add_argument("--root", required=True, help="folder that keeps the repositories")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (127.0.0.1, localhost or ::1)")
    p.add_argument("--port", type=port_number, default=8080, help="TCP port (0: any free port, printed at start)")
    p.add_argument("--tokens", default=None, metavar="FILE",
                   help='JSON {"<token>": ["<namespace>", ...]} ("*": every namespace): only these tokens write, '
                        "each to its namespaces (default: any token writes anywhere)")
    p.add_argument("--max-body-mb", type=positive_int, default=64, help="largest JSON/commit request body in MiB")
    p.add_argument("--max-upload-mb", type=positive_int, default=20 * 1024, help="largest LFS upload in MiB")
    p.add_argument("--timeout", type=positive_float, default=30.0,
                   help="seconds a client may stay silent mid-request before it is disconnected")
    p.add_argument("--request-deadline", type=positive_float, default=60.0,
                   help="seconds a whole request may take to arrive (an LFS upload: one more per MiB)")
    p.set_defaults(func=_cmd_hub_server)


def _cmd_hub_server(args: argparse.Namespace) -> dict:
    from hf_twophase.hub.server import LocalHub

    hub = LocalHub(args.root, host=args.host, port=args.port, tokens=args.tokens,
                   max_body_bytes=args.max_body_mb * 2**20, max_upload_bytes=args.max_upload_mb * 2**20,
                   timeout=args.timeout, request_deadline=args.request_deadline)
    hub.start()
    token_hint = "a token from the tokens file" if args.tokens else "any HF_TOKEN value"
    print(f"local hub serving {Path(args.root).resolve()} at {hub.url}\n"
          f"  {hub.describe()}\n"
          f"  export HF_ENDPOINT={hub.url} HF_HUB_DISABLE_XET=1   (writes need {token_hint})", flush=True)
    try:
        hub.serve_forever()
    finally:
        hub.stop()
    return {}


def _subcommand(sub, name: str, *, help: str) -> argparse.ArgumentParser:  # noqa: A002 - argparse's own name
    parser = sub.add_parser(name, help=help, description=help[:1].upper() + help[1:] + ".",
                            formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return parser


def _add_replay(sub) -> None:
    from hf_twophase.cli.replay import add_replay_arguments

    p = sub.add_parser("replay", help="replay a selection policy over recorded learning curves (leave-one-out)",
                       formatter_class=DefaultsHelpFormatter)
    add_replay_arguments(p)
    p.set_defaults(func=_cmd_replay)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-twophase", description="Two-phase recall-and-select model selection for Hugging Face models."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_cluster, _add_recall, _add_synth,
                _add_build_matrix, _add_import, _add_matrix, _add_hub_server, _add_replay):
        add(sub)
    sub.add_parser("select", help="the main job: choose and fine-tune the best model for a dataset "
                                  "(hf-twophase select --help)", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["select"]:  # the main job has its own parser, shared with examples/select.py
        from hf_twophase.cli.select import main as select_main

        return select_main(argv[1:], prog="hf-twophase select")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # a refused argument (exit 2, its one line already printed) or --help (0)
        return int(stop.code or 0)
    wants_json = getattr(args, "json", False)
    try:
        # with --json, stdout carries one JSON object: whatever the work prints (Trainer, libraries) goes to stderr
        with contextlib.redirect_stdout(sys.stderr) if wants_json else contextlib.nullcontext():
            out = args.func(args)
    except HFTwoPhaseError as exc:
        print(f"hf-twophase {args.command}: error: {exc}", file=sys.stderr)
        return 2
    if wants_json:
        json.dump(out, sys.stdout)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
