"""`gputopo simulate`: replay a workload under gputopo, the default scheduler, BestFit and Random.

Exit codes: 0 ok, 2 unusable input (scenario, trace, fleet map or scheduler
configuration; the message names the file and, for CSVs, the line).

The machine interface is stable (``docs/placement.md``)::

    gputopo simulate --trace DIR [--pod-list NAME] [--policies LIST] [--seeds LIST] --json

prints one JSON object whose ``policies`` maps each policy name to at least
``unallocated_gpu_pct``, ``aligned_pct``, ``failed_pods`` and ``busbw_gbps``
(means over the seeds). Without ``--trace`` the synthetic scenario runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from labeler.topology.errors import ConfigError, GputopoError
from policy.scoring import DEFAULT_STRATEGIES, resolve
from simulator import fleet, report, runner, trace
from simulator.gpu_choice import WHOLE_CHOICES
from simulator.kubesched import DEFAULT_SCHEDULER_CONFIG, load_scheduler_config
from simulator.policies import POLICIES
from simulator.scenario import DEMO_SCENARIO, load_scenario

__all__ = ["SimulateSettings", "main", "parse_seeds"]

EXIT_INPUT = 2


class SimulateSettings(BaseSettings):
    """Defaults of ``gputopo simulate`` that a deployment may move (env prefix ``GPUTOPO_SIMULATE_``)."""

    model_config = SettingsConfigDict(env_prefix="GPUTOPO_SIMULATE_", extra="forbid")

    scheduler_config: Path = DEFAULT_SCHEDULER_CONFIG
    scenario: Path = DEMO_SCENARIO
    topology_dirs: Annotated[list[Path], NoDecode] = Field(default_factory=list)

    @field_validator("topology_dirs", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        return [p for p in v.split(":") if p] if isinstance(v, str) else v


#: columns of the results table when stdout is not a terminal: the widest table (9 columns) fits
_PIPE_WIDTH = 120


def parse_seeds(text: str) -> list[int]:
    """``42,43`` or ``42..51`` (inclusive) or a mix: ``1,5..7``.

    >>> parse_seeds("42..44,50")
    [42, 43, 44, 50]
    """
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("..")
        try:
            a, b = (int(lo), int(hi)) if sep else (int(part), int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(f"seed {part!r} is not an integer or a range a..b") from None
        if b < a or b - a > 10_000:
            raise argparse.ArgumentTypeError(f"seed range {part!r} is empty or too long")
        out.extend(range(a, b + 1))
    if not out:
        raise argparse.ArgumentTypeError("no seeds given")
    return out


def _policies(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in names if p not in POLICIES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown policy {', '.join(bad) or '(none)'}; known: {', '.join(POLICIES)}")
    return list(dict.fromkeys(names))


def _strategies(text: str) -> list[str]:
    """``--strategy``: the extender's scoring terms to keep on (comma list), checked as the extender checks them."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    try:
        resolve(names)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return names


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gputopo simulate",
        description=(
            "Replay pods on a fleet of real GPU topologies under four policies side by side: gputopo (kube-scheduler "
            "+ the gputopo extender, from a KubeSchedulerConfiguration), default (kube-scheduler with its own "
            "defaults), and the FGD paper's bestfit and random. Without --trace: the bundled synthetic scenario "
            "(PyTorchJob workers + vLLM servers on seven real 8-GPU boards)."
        ),
    )
    src = p.add_argument_group("workload")
    src.add_argument("--trace", metavar="DIR", help="the Alibaba openb trace directory (cluster-trace-gpu-v2023 CSVs)")
    src.add_argument("--pod-list", default="default", metavar="NAME",
                     help="openb pod list: default, multigpu50, gpushare40, cpu200... (default: %(default)s)")
    src.add_argument("--whole-gpus", action="store_true",
                     help="trace: give GPU-sharing pods one whole GPU (a cluster without sharing)")
    src.add_argument("--tune", type=float, default=1.3, metavar="X",
                     help="trace: replay until the GPU request reaches X × capacity, as FGD (default: %(default)s)")
    src.add_argument("--departures", action="store_true",
                     help="pods leave: trace creation/deletion times, or Poisson arrivals with exponential lifetimes")
    src.add_argument("--scenario", metavar="FILE", help="synthetic scenario YAML (default: the bundled demo)")
    src.add_argument("--fleet-map", metavar="FILE", help="trace: YAML of 'MODEL/GPUS: topology file' replacing the "
                                                         "documented default mapping")
    src.add_argument("--topology-dir", action="append", default=[], metavar="DIR",
                     help="where topology files are looked up first (repeatable; then the bundled boards)")
    run = p.add_argument_group("run")
    run.add_argument("--policies", type=_policies, default=list(POLICIES), metavar="LIST",
                     help=f"comma-separated subset of {','.join(POLICIES)} (default: all)")
    run.add_argument("--seeds", type=parse_seeds, default=[42, 43, 44], metavar="LIST",
                     help="seeds, e.g. 42,43 or 42..51 (default: 42..44)")
    run.add_argument("--scheduler-config", metavar="FILE",
                     help="KubeSchedulerConfiguration (raw or in a ConfigMap) for gputopo "
                          "(default: the one gputopo ships; the default policy is always kube-scheduler's defaults)")
    run.add_argument("--strategy", dest="strategies", type=_strategies, default=list(DEFAULT_STRATEGIES),
                     metavar="LIST", help="the extender's scoring terms for the gputopo policy, as its --strategy "
                                          f"(default: all: {','.join(DEFAULT_STRATEGIES)})")
    run.add_argument("--profile", metavar="NAME", help="scheduler profile (schedulerName) to model (default: first)")
    run.add_argument("--gpu-choice", choices=WHOLE_CHOICES, default="device-plugin",
                     help="how GPUs inside the node are picked: NVIDIA's device plugin (best effort), a blind "
                          "plugin, or the lowest free indices (default: %(default)s)")
    out = p.add_argument_group("output")
    fmt = out.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    fmt.add_argument("--markdown", action="store_true", help="print the headline table as Markdown (mean ± sd)")
    out.add_argument("--chart", metavar="PATH", help="also write a PNG chart of the headline metrics")
    out.add_argument("--by-kind", action="store_true", help="also show the metrics per pod kind")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


Tick = Callable[[int], None]


def _progress_factory(console: Console, enabled: bool) -> tuple[Progress | None, Callable[[int], Tick] | None]:
    if not enabled:
        return None, None
    bar = Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=console, transient=True)

    def start(total: int) -> Tick:
        task = bar.add_task("pods", total=total)
        pending = [0]

        def tick(n: int) -> None:
            pending[0] += n
            if pending[0] >= 500:
                bar.advance(task, pending[0])
                pending[0] = 0

        return tick

    return bar, start


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    err = Console(stderr=True)
    try:
        settings = SimulateSettings()
    except ValidationError as e:
        err.print(f"[red]invalid GPUTOPO_SIMULATE_ settings:[/red] {e.errors(include_url=False)[0]['msg']}")
        return EXIT_INPUT
    search = fleet.search_path([*args.topology_dir, *settings.topology_dirs])
    try:
        config = load_scheduler_config(args.scheduler_config or settings.scheduler_config, profile=args.profile)
        if args.trace:
            if not Path(args.trace, trace.NODE_LIST).is_file():
                raise GputopoError(f"{args.trace}: no {trace.NODE_LIST} (is this the openb trace directory?)")
            setup = runner.trace_setup(args.trace, args.pod_list, search, fleet_map=args.fleet_map, tune=args.tune,
                                       departures=args.departures, sharing=not args.whole_gpus)
        else:
            scenario = load_scenario(args.scenario or settings.scenario, search)
            setup = runner.synthetic_setup(scenario, departures=args.departures)
        bar, start = _progress_factory(err, not args.no_progress and err.is_terminal)
        if bar is not None:
            with bar:
                result = runner.simulate(setup, policies=args.policies, seeds=args.seeds, config=config,
                                         whole_choice=args.gpu_choice, progress=start, strategies=args.strategies)
        else:
            result = runner.simulate(setup, policies=args.policies, seeds=args.seeds, config=config,
                                     whole_choice=args.gpu_choice, strategies=args.strategies)
    except GputopoError as e:
        err.print(f"[red]gputopo simulate:[/red] {e}")
        return EXIT_INPUT
    if args.chart:
        report.write_chart(result, args.chart)
    if args.json:
        sys.stdout.write(json.dumps(report.jsonable(result), indent=2) + "\n")
    elif args.markdown:
        sys.stdout.write(report.markdown(result))
    else:
        # a pipe or a log (make demo in CI) gets the table's full width, not rich's 80 columns
        out = Console() if sys.stdout.isatty() else Console(width=_PIPE_WIDTH)
        report.render(result, out, by_kind=args.by_kind)
        if args.chart:
            out.print(f"chart: {args.chart}")
    return 0
