"""The long chaos run (tests/chaos.py; the short one is tests/test_chaos.py): 10,000 mixed
webhooks from all three platforms into `kwai-bridge serve --with-worker`, processes
killed with SIGKILL 5 times (the dispatcher, a web worker, serve with everything under
it, in turn), PostgreSQL restarted once halfway, Kwai failing 20 % of its requests with
5xx, timeouts and 429s with absurd Retry-After values; on SQLite and on PostgreSQL.

Beside each run, a baseline measured in the same run: the same webhooks at the same rate
with nothing going wrong. Prints, per database: webhooks acknowledged, conversions,
kills, events in flight at a kill, conversions delivered twice, lost, and times.
Exits 1 when any acknowledged conversion was lost, delivered without being acknowledged,
or delivered twice without being in flight at a kill.

PostgreSQL is restarted with `pg_ctlcluster <version> <cluster> restart`, which needs
root and a cluster on this machine; otherwise the run says why it skipped the restart.
`--no-postgres-restart` skips it on purpose (a server others are using).

    python benchmarks/chaos.py [--webhooks 10000] [--kills 5] [--rate 60]
        [--postgres-url URL] [--no-postgres-restart] [--no-baseline] [--only sqlite|postgres]
"""
from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.chaos import KILL_KINDS, Plan, Report, postgres_cluster, run_chaos  # noqa: E402
from tests.conftest import DEFAULT_PG  # noqa: E402


def postgres_schema(base: str):
    """A fresh schema on `base` and the URL that uses it; drop it with the returned function."""
    import psycopg

    schema = "chaos_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'create schema "{schema}"')

    def drop() -> None:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'drop schema "{schema}" cascade')

    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}", drop


def restarter(url: str, allowed: bool):
    """A function restarting the PostgreSQL server at `url`, or why there is none."""
    if not allowed:
        return None, "skipped (--no-postgres-restart)"
    cluster = postgres_cluster(url)
    if isinstance(cluster, str):
        return None, f"skipped: this process may not control the server ({cluster})"
    version, name = cluster

    def restart() -> None:
        subprocess.run(["pg_ctlcluster", version, name, "restart"], check=True, timeout=120,
                       capture_output=True)

    return restart, f"pg_ctlcluster {version} {name} restart, halfway through"


def run(name: str, plan: Plan, url: str, workdir: Path) -> Report:
    print(f"  {name} ...", flush=True)
    return run_chaos(plan, database_url=url, workdir=workdir, log=lambda line: print(f"    {line}", flush=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--webhooks", type=int, default=10_000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--rate", type=float, default=60.0, help="webhooks per second at most")
    parser.add_argument("--postgres-url", default=os.environ.get("KWAI_BRIDGE_TEST_POSTGRES_URL", DEFAULT_PG))
    parser.add_argument("--no-postgres-restart", action="store_true")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--only", choices=("sqlite", "postgres"))
    args = parser.parse_args()
    kills = list(itertools.islice(itertools.cycle(KILL_KINDS), args.kills))
    timeout = max(600.0, 3 * args.webhooks / args.rate)
    failed = False
    rows: list[tuple[str, str, Report]] = []
    for database in ("sqlite", "postgres"):
        if args.only and database != args.only:
            continue
        print(f"\n{database}:", flush=True)
        restart, restart_note = (None, "n/a")
        if database == "postgres":
            restart, restart_note = restarter(args.postgres_url, not args.no_postgres_restart)
            print(f"  PostgreSQL restart: {restart_note}", flush=True)
        runs = [("baseline", Plan(webhooks=args.webhooks, kills=(), failure_share=0.0, rate=args.rate,
                                  timeout=timeout))] if not args.no_baseline else []
        runs.append(("chaos", Plan(webhooks=args.webhooks, kills=kills, restart_database=restart,
                                   rate=args.rate, timeout=timeout)))
        for name, plan in runs:
            with tempfile.TemporaryDirectory() as workdir:
                if database == "sqlite":
                    report = run(name, plan, f"sqlite:///{workdir}/chaos.db", Path(workdir))
                else:
                    url, drop = postgres_schema(args.postgres_url)
                    try:
                        report = run(name, plan, url, Path(workdir))
                    finally:
                        drop()
            rows.append((database, name, report))
            print(f"    {report.summary()}", flush=True)
            for problem in report.problems:
                print(f"    PROBLEM: {problem}", flush=True)
            failed |= bool(report.problems)

    print(f"\nChaos, {args.webhooks} webhooks at up to {args.rate:g}/s, Kwai failing 20 % in the chaos runs")
    print(f"{'database':<9} {'run':<9} {'acked':>6} {'conv.':>6} {'kills':>5} {'db restarts':>11} "
          f"{'Kwai reqs':>9} {'in flight':>9} {'twice':>5} {'lost':>4} {'traffic s':>9} {'drain s':>7}")
    for database, name, r in rows:
        print(f"{database:<9} {name:<9} {r.acknowledged:>6} {r.conversions:>6} {len(r.kills):>5} "
              f"{r.database_restarts:>11} {r.kwai_requests:>9} {r.in_flight:>9} {r.duplicates:>5} {r.lost:>4} "
              f"{r.traffic_seconds:>9.1f} {r.drain_seconds:>7.1f}")
    print("holds: every acknowledged conversion delivered, twice only when in flight at a kill"
          if not failed else "FAILED: see PROBLEM lines above")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
