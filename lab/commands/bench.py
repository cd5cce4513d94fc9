"""`facelab bench` and `facelab compare`: the 1:1 benchmark."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facelab.commands._common import Steps, check_out, progress_bar, unlocked
from facelab.errors import BadInputError


def _scorer(scheduler: str | None, client_out: list | None = None, timeout: float = 10.0):
    from facelab.bench import score_pairs

    if scheduler is None:
        return score_pairs
    try:
        import distributed
    except ImportError as e:
        raise BadInputError(
            "--scheduler needs the cluster extra: pip install 'facelab[cluster]'"
        ) from e
    from functools import partial

    from facelab.bench._cluster import score_pairs_on_cluster

    try:
        client = distributed.Client(scheduler, timeout=timeout)
    except OSError as e:
        raise BadInputError(f"--scheduler {scheduler}: cannot connect ({e})") from e
    if client_out is not None:
        client_out.append(client)
    return partial(score_pairs_on_cluster, client)


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < v <= 3600:
        raise argparse.ArgumentTypeError(f"{text} is outside (0, 3600] seconds")
    return v


MAX_SCORE_FILE = 4 << 30  # 4 GiB: 500M float64 scores


def _read_scores(path: Path):
    """A 1-D array of scores from .npy or text (one number a line; 'nan' = failure).

    Every problem is one ``BadInputError`` naming the file: not a regular file (a FIFO
    or ``/dev/zero`` is refused without reading it), no scores, an infinity (``1e400``
    overflows to one), a dtype other than float32, float64 or integers below 2^53
    (bool, float16, complex, strings, records). Big-endian arrays are read as numbers."""
    import io
    import warnings

    import numpy as np
    from facelab.jsonfile import read_regular

    try:
        data = read_regular(path, max_bytes=MAX_SCORE_FILE, what="a score file")
    except FileNotFoundError as e:
        raise BadInputError(f"{path}: no such file") from e
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # loadtxt's "input contained no data"
            if path.suffix == ".npy":
                a = np.load(io.BytesIO(data), allow_pickle=False)
            else:
                a = np.loadtxt(io.StringIO(data.decode("utf-8")), dtype=np.float64, ndmin=1)
    except (OSError, ValueError, EOFError, UnicodeDecodeError) as e:
        raise BadInputError(f"{path}: not a score file ({str(e)[:120]})") from e
    if a.ndim != 1:
        raise BadInputError(f"{path}: scores must be one number a line (a 1-D array)")
    kind, size = a.dtype.kind, a.dtype.itemsize
    if not ((kind == "f" and size in (4, 8)) or kind in "iu"):
        raise BadInputError(
            f"{path}: scores must be float32, float64 or integers, not {a.dtype.name}"
        )
    a = a.astype(a.dtype.newbyteorder("="), copy=False)  # big-endian: the same numbers
    if len(a) == 0:
        raise BadInputError(f"{path}: no scores in it")
    if kind in "iu" and len(a) and int(np.abs(a.astype(np.float64)).max()) > 2**53:
        raise BadInputError(f"{path}: integer scores above 2^53 lose their value as floats")
    if kind == "f" and (n := int(np.isinf(a).sum())):
        raise BadInputError(f"{path}: {n} infinite score(s) (a number beyond the float range)")
    return a


def _cmd_bench(args: argparse.Namespace) -> int:
    from facelab.bench._matcher import Matcher
    from facelab.bench.report import write_comparison, write_report
    from facelab.bench.run import (
        provenance,
        run_benchmark,
        samples_from_dataset,
        score_report,
        summary_table,
    )

    out = args.out or Path("bench-report").absolute()
    if args.scores is not None:  # scores computed elsewhere
        check_out(out, args.force)
        gen, imp = (_read_scores(Path(f)) for f in args.scores)
        report = score_report(gen, imp, kind=args.score_kind or "similarity")
        page = write_report(report, out)
        print(summary_table(report))
        print(f"  report: {page}")
        return 0
    models = args.model or []
    if not models:
        raise BadInputError("facelab bench: give --model (or --scores GEN IMP)")
    if args.lab is not None:
        from facelab.bench.lab_run import bench_in_lab

        if not args.tenant:
            raise BadInputError("facelab bench --lab needs --tenant")
        if args.device != "cpu":
            raise BadInputError("facelab bench --lab: jobs run on the CPU (--device cpu)")
        lab, root, log, actor = unlocked(args.lab, args.tenant)
        with log, Steps("bench", total=len(models)) as steps:
            for ref in models:
                steps(f"{ref}: a confined benchmark job on the {args.split} split")
                report, page = bench_in_lab(
                    lab, root, args.tenant, str(ref), actor, log, split=args.split
                )
                print(summary_table(report))
                print(f"  report (in the tenant's outbox, a confined job's output): {page}")
        return 0
    if args.dataset is None:
        raise BadInputError("facelab bench: give --lab LAB --tenant T, or --dataset DIR")
    check_out(out, args.force)
    clients: list = []
    # an unreachable cluster fails first
    scorer = _scorer(args.scheduler, clients, args.connect_timeout)
    samples = samples_from_dataset(args.dataset)
    reports = []
    steps = Steps("bench", total=len(models), bar=False)  # extraction draws its own bar
    for ref in models:
        steps(f"{ref}: templates of {len(samples)} images, then every pair's score")
        if ref == "dlib":
            from facelab.bench._dlib import DlibMatcher

            matcher = DlibMatcher()
        else:
            matcher = Matcher(
                Path(ref), args.device, warn=lambda m: print(f"facelab: {m}", file=sys.stderr)
            )
        extract = None
        if clients and ref != "dlib":  # extraction on the cluster too
            from facelab.bench._cluster import extract_on_cluster

            extract = extract_on_cluster(clients[0], Path(ref).resolve(), args.device)
        update, close = progress_bar(len(samples), "extract")
        try:
            report = run_benchmark(
                samples, matcher, progress=update, scorer=scorer, extract=extract
            )
        finally:
            close()
        report["provenance"].update(provenance(matcher, args.dataset))
        if args.score_kind and args.score_kind != "similarity":
            report["warnings"].append(
                "--score-kind applies to --scores; templates are compared by cosine similarity"
            )
        where = out if len(models) == 1 else out / Path(ref).name
        page = write_report(report, where)
        print(summary_table(report))
        print(f"  report: {page} (and report.json, det.png, scores.png, groups.png)")
        reports.append(report)
    if len(reports) > 1:
        print(f"  comparison: {write_comparison(reports, out)}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    import json as _json

    from facelab.bench.report import write_comparison

    out = args.out or Path("bench-compare").absolute()
    check_out(out, args.force)
    reports = []
    for r in args.reports:
        f = r / "report.json" if r.is_dir() else r
        try:
            doc = _json.loads(f.read_text(encoding="utf-8"))
            doc["det"], doc["eer"], doc["operating_points"], doc["model"]
        except (OSError, ValueError) as e:
            raise BadInputError(f"{f}: not a report.json ({e})") from e
        except (KeyError, TypeError) as e:
            raise BadInputError(f"{f}: not a facelab benchmark report (no {e})") from e
        reports.append(doc)
    page = write_comparison(reports, out)
    print(f"comparison of {len(reports)} runs: {page}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the `facelab` parser."""
    b = sub.add_parser("bench", help="1:1 verification benchmark (FNMR at fixed FMR, EER)")
    b.add_argument("--lab", type=Path, default=None)
    b.add_argument("--tenant", default=None)
    b.add_argument("--dataset", type=Path, default=None, help="a plain dataset directory")
    b.add_argument(
        "--model",
        action="append",
        help="with --lab: a registered model "
        "(name@version or digest); with --dataset: a model directory, or "
        "'dlib' for dlib's ResNet reference (the reference extra); repeat it to compare "
        "several models on one DET (compare.html)",
    )
    b.add_argument(
        "--scores",
        nargs=2,
        type=Path,
        metavar=("GENUINE", "IMPOSTOR"),
        help="metrics of scores computed elsewhere (.npy or one number a line; nan = a "
        "failed comparison)",
    )
    b.add_argument(
        "--score-kind",
        choices=["similarity", "distance"],
        default=None,
        help="with --scores: similarity (match when score >= t, the default) or distance "
        "(match when score <= t)",
    )
    b.add_argument(
        "--split",
        default="test",
        choices=["train", "verification", "test"],
        help="with --lab: which split of the tenant's records the job reads (default test)",
    )
    b.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    b.add_argument(
        "--scheduler",
        default=None,
        help="tcp://HOST:PORT of a Dask scheduler: score the blocks on the cluster",
    )
    b.add_argument(
        "--connect-timeout",
        type=_seconds,
        default=10.0,
        metavar="S",
        help="seconds to wait for the --scheduler to answer (default 10)",
    )
    b.add_argument("--out", type=Path, default=None, help="report directory (bench-report)")
    b.add_argument("--force", action="store_true", help="replace an existing --out")
    b.set_defaults(func=_cmd_bench)
    cmp_ = sub.add_parser("compare", help="several benchmark reports on one DET")
    cmp_.add_argument("reports", nargs="+", type=Path, help="report.json files or their dirs")
    cmp_.add_argument("--out", type=Path, default=None, help="output dir (bench-compare)")
    cmp_.add_argument("--force", action="store_true", help="replace an existing --out")
    cmp_.set_defaults(func=_cmd_compare)
