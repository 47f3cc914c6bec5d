#!/usr/bin/env python3
"""The design pgstress replaces, re-created for benches/compare.sh.

As the original did (see the project's notes on it): each step picks one random CSV file of a
data folder, draws one random value per request from column 0, and starts one OS process per
request (multiprocessing, fork), each opening a new psycopg2 connection, running one lookup of
the `sharding` table and fetching one row. Failures (no row, any error) go into a shared
counter. The step's wall time runs from launching the first process to joining the last, and the
two original log files are written. Like the original, the processes are started one after the
other and joined at the end: there is no barrier, and that is the design being measured.

Differences, all of which make this re-creation cheaper than the original, not dearer: the CSV
files are read with the csv module instead of pandas, and the connection settings come from the
command line instead of the source.

Also written, for the comparison: `<ts>_steps_cpu.csv` with each step's wall time and the CPU
seconds (user + system) of this process and of the request processes it reaped during the step.
"""

import argparse
import csv
import datetime
import glob
import multiprocessing
import os
import random
import sys
import time

import psycopg2

QUERY = "SELECT * FROM sharding WHERE url_hash = %s::bytea"


def request(dsn, value, failed):
    """One request in its own process: connect, look up one row, close."""
    try:
        connection = psycopg2.connect(dsn)
        try:
            cursor = connection.cursor()
            cursor.execute(QUERY, ("\\x" + value,))
            row = cursor.fetchone()
        finally:
            connection.close()
        if row is None:
            raise LookupError("no row came back")
    except Exception:  # the original counted every failure alike
        with failed.get_lock():
            failed.value += 1


def load_files(folder):
    files = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.csv"))):
        with open(path, newline="") as handle:
            files[path] = [row[0] for row in csv.reader(handle) if row]
    if not files:
        sys.exit(f"no *.csv file in {folder}")
    return files


def cpu_seconds():
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="libpq key=value string")
    parser.add_argument("--data", required=True, help="folder of *.csv parameter files")
    parser.add_argument("--logs", required=True, help="folder for the log files")
    parser.add_argument("--steps", type=int, default=15, help="number_of_test")
    parser.add_argument("--step", type=int, default=50, help="step i sends i * step requests")
    args = parser.parse_args()

    files = load_files(args.data)
    os.makedirs(args.logs, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%m%d%Y_%H%M%S")
    base = os.path.join(args.logs, stamp)
    with open(base + "_log.csv", "w") as log, open(
        base + "_log_execution_time.csv", "w"
    ) as exec_log, open(base + "_steps_cpu.csv", "w") as cpu_log:
        cpu_log.write("step,requests,failed,wall_s,cpu_s\n")
        for i in range(1, args.steps + 1):
            requests = i * args.step
            values = files[random.choice(list(files))]
            failed = multiprocessing.Value("i", 0)
            cpu_before = cpu_seconds()
            started = time.perf_counter()
            processes = []
            for _ in range(requests):
                process = multiprocessing.Process(
                    target=request, args=(args.dsn, random.choice(values), failed)
                )
                process.start()
                processes.append(process)
            for process in processes:
                process.join()
            wall = time.perf_counter() - started
            cpu = cpu_seconds() - cpu_before
            log.write(f"{requests},{failed.value}\n")
            exec_log.write(f"{requests},{wall}\n")
            cpu_log.write(f"{i},{requests},{failed.value},{wall:.6f},{cpu:.6f}\n")
            for handle in (log, exec_log, cpu_log):
                handle.flush()
            print(f"step {i}: {requests} requests, {failed.value} failed, {wall:.3f}s, cpu {cpu:.3f}s")


if __name__ == "__main__":
    main()
