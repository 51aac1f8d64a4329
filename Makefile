# The two commands of the README: `make demo` and `make test`. Both install
# what they need first (scripts/install-deps.sh).

CARGO ?= cargo

.PHONY: deps build test demo bench bench-failover sim campaign lab-up lab-down fuzz man clean

deps:
	scripts/install-deps.sh

build: deps
	$(CARGO) build --release --workspace

test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace --lib --bins --tests -- --test-threads=2
	scripts/fuzz.sh $(FUZZ_SECONDS)

demo: build
	target/release/duet-lab demo

# The benchmark suite (docs/performance.md): each bench prints its table
# and merges its figures into target/bench/results.json (and results.svg).
bench: build
	$(CARGO) bench --bench datapath
	$(CARGO) bench --bench replication
	$(CARGO) bench --bench export
	$(CARGO) bench --bench overhead
	target/release/duet-lab bench-failover $(RUNS)

# Group web's failover timed over 10 crashes (and 4 with the classic
# deadtime of 10 s as the reference line); RUNS=N for another count.
RUNS ?= 10
bench-failover: build
	target/release/duet-lab bench-failover $(RUNS)

# The whole-cluster simulation (tests/cluster_sim.rs): SEEDS schedules,
# ending with `schedules: N, violations: V`; non-zero exit on a violation.
# SEED=S replays from schedule S.
SEEDS ?= 2000
SEED ?= 1
sim: deps
	@mkdir -p target
	@DUET_SIM_STRICT=1 DUET_SIM_SEEDS=$(SEEDS) DUET_SIM_SEED=$(SEED) $(CARGO) test --release --test cluster_sim \
		every_schedule_keeps_every_invariant -- --nocapture > target/sim.log 2>&1; rc=$$?; \
		grep -v '^schedules:' target/sim.log | tail -n 60; grep '^schedules:' target/sim.log; exit $$rc

# The lab's fault campaign (lab/src/campaign.rs): FAULTS random faults
# against two nodes and a witness under client reads and writes, ending
# with `faults: K, violations: V, lost writes: W, longest outage: X.XX s`;
# non-zero exit on a violation or a lost write. CAMPAIGN_SEED=S replays
# a schedule (a new one from the clock otherwise); CAMPAIGN_ONLY=KIND
# (crash, kill-duetd, cable, partition, loss, disk-errors, standby) draws
# faults of that kind only.
FAULTS ?= 200
CAMPAIGN_SEED ?=
campaign: build
	target/release/duet-lab campaign $(FAULTS) $(CAMPAIGN_SEED)

# The two-node lab left running for a person to explore; `make lab-down`
# removes it. A shell on a node: target/release/duet-lab shell node1
lab-up: build
	target/release/duet-lab up 2

lab-down:
	target/release/duet-lab down

# Every fuzz target (fuzz/README.md) for FUZZ_SECONDS each, from its
# committed corpus; `make test` runs the same. A crash fails it and leaves
# the input in target/fuzz-artifacts.
FUZZ_SECONDS ?= 20
fuzz:
	scripts/fuzz.sh $(FUZZ_SECONDS)

# Completions and the man page, generated from the CLI definition.
man: build
	mkdir -p target/share
	target/release/duetctl man > target/share/duetctl.1
	target/release/duetctl completions bash > target/share/duetctl.bash
	target/release/duetctl completions zsh > target/share/_duetctl
	target/release/duetctl completions fish > target/share/duetctl.fish

clean:
	$(CARGO) clean
