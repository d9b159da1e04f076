"""python -m nas.report RUN [RUN ...] [--out DIR]

Reports of search runs: Pareto fronts (accuracy vs MACs, and vs latency when the trials have it), the
best architecture per MAC bin, hypervolume over trials and statistics of the choices, as pandas tables
(CSV and markdown) and matplotlib plots gathered in report.md. One run is reported in its own folder;
several runs are compared in --out (default results/compare-<time>/). nas.search writes its report.md
through write_report, the same code.
"""
from __future__ import annotations

import sys

from nas.cli import Parser, run_cli
from nas.reporting.document import FILES_DIR, report_runs


def build_parser() -> Parser:
    p = Parser(prog="python -m nas.report", description=__doc__.split("\n\n")[1])
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders written by nas.search (results/<run>)")
    p.add_argument("--out", default=None, help="output folder (default: the run's folder for one run, results/compare-<time> for several)")
    return p


@run_cli
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    path = report_runs(args.runs, args.out)
    plots_written = sorted(p.name for p in (path.parent / FILES_DIR).glob("*.png"))
    print(f"report: {path} (plots: {', '.join(plots_written)}; tables in {path.parent / FILES_DIR}/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
