#!/bin/sh
# Mutation testing of the pure judging and aggregation code, with the unit tests only (the
# integration tests need a real cluster and minutes per mutant). Too slow for every CI run:
# run it before changing the verdict, the flags, the gates or the statistics, and keep the
# score in docs/testing.md at or above 90% of the viable mutants.
#
#   scripts/mutants.sh                       # every file below (~440 mutants: hours on a busy
#                                            # 2-core machine, 15-35 s a mutant)
#   scripts/mutants.sh --file src/judge/gate.rs   # one file while iterating
#   scripts/mutants.sh --list                # the mutants, without running them
#   scripts/mutants.sh --in-place            # mutate this tree, reusing its target/: far
#                                            # faster; edit nothing until it ends (or run it
#                                            # in a copy: cp -a . /tmp/tree)
#   scripts/mutants.sh --file F --iterate    # only the mutants missed last time, after a fix
#
# Needs cargo-mutants (`cargo install cargo-mutants --locked`). Results: mutants.out/.
set -eu
cd "$(dirname "$0")/.."

if [ "$#" -gt 0 ] && [ "${1#--file}" != "$1" ]; then
    files=""
else
    files="--file src/judge/verdict.rs --file src/judge/flags.rs --file src/judge/gate.rs
        --file src/measure/stats.rs --file src/model/step.rs --file src/model/outcome.rs
        --file src/model/rules.rs --file src/measure/sampler/counters.rs
        --file src/measure/sampler/cpu.rs --file src/engine/rate.rs
        --file src/model/mean_peak.rs --file src/model/activity.rs --file src/model/server_cpu.rs"
fi

# Out of scope in those files: what reads the live system (/proc, sysinfo) or starts threads
# and connections; the integration tests run those against a real server.
exclude='HostTicks::read|CpuProbe::new|LocalServer::from_backend_pid|impl Probe for CpuProbe.*::read|impl Engine for Rate|Rate::new|Rate::spawn|send_request'

# Parallel jobs need copies of the tree (MUTANTS_JOBS=2); --in-place runs one at a time.
jobs=""
[ -n "${MUTANTS_JOBS:-}" ] && jobs="--jobs $MUTANTS_JOBS"

# shellcheck disable=SC2086 # $files is a list of words on purpose
exec cargo mutants \
    $files $jobs \
    --exclude-re "$exclude" \
    --test-tool cargo \
    --timeout "${MUTANTS_TIMEOUT:-120}" \
    --cargo-arg=--lib \
    "$@"
