# percore — common tasks. `make run` starts a server on 127.0.0.1:6379; `make test` runs
# every test (differential tests need redis-server: apt-get install -y redis-server).

CARGO ?= cargo
ARGS ?=
FUZZ_SECONDS ?= 60

.PHONY: fuzz-regressions fuzz-cmin build run test lint fmt bench bench-syscalls bench-idle-memory bench-memory bench-growth bench-stalls bench-snapshot bench-bgsave-collection bench-commands bench-pubsub bench-tls bench-micro bench-memtier bench-cluster bench-acl fuzz fuzz-decode fuzz-apply fuzz-snapshot fuzz-rdb-value fuzz-acl-rules clean

build:
	$(CARGO) build --release --bin percore

run: build
	./target/release/percore $(ARGS)

test:
	$(CARGO) test --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# criterion benchmarks of the decoder and the shard (ns per operation).
bench-micro:
	$(CARGO) bench -p percore-proto -p percore-shard

# percore beside every installed peer (redis-server, valkey-server, dragonfly), seven string
# workloads driven by percore-loadtest (and memtier_benchmark when on PATH), then HSET/HGET,
# SADD/SISMEMBER and LPUSH/RPOP rows (memtier_benchmark only): loadtest/results/DATE/.
bench:
	$(CARGO) build --release --bin percore --bin percore-loadtest
	./loadtest/scenarios/bench.sh

# System calls per request at pipeline 1 and idle wake-ups, beside redis-server (and
# valkey-server): needs root and perf.
bench-syscalls:
	$(CARGO) build --release --bin percore --bin percore-loadtest
	./loadtest/scenarios/syscalls.sh

# Memory per idle connection (10,000 clients, one PING each), beside redis-server and valkey-server.
bench-idle-memory:
	$(CARGO) build --release --bin percore --bin percore-loadtest
	./loadtest/scenarios/idle-memory.sh

# Bytes per key (RSS and used_memory) for 1M and 10M keys of 16 B with 32 B values, per hash
# and field for 1M hashes of 10 fields and one hash of 1M fields, per member for 1M sets of
# 20, and per element for 1M lists of 10 and one list of 10M, beside redis-server and
# valkey-server (when installed). COUNTS=, HASHES=, FIELDS=, SETS=, LISTS= or ELEMENTS=
# (empty) skip rows.
bench-memory:
	$(CARGO) build --release --bin percore --bin percore-loadtest
	./loadtest/scenarios/memory.sh

# Latency while one shard's table grows from empty to 10M keys, beside redis-server.
bench-growth:
	$(CARGO) build --release --bin percore --bin percore-loadtest
	./loadtest/scenarios/growth.sh

# Where the slow replies of a 10M-key fill come from (server time on the wire, and what the
# server's CPU was doing): needs root, tcpdump and perf. SERVER=redis for the peer.
bench-stalls:
	$(CARGO) build --release --bin percore --bin percore-loadtest
	./loadtest/scenarios/stalls.sh

# SAVE/load time and BGSAVE's memory and latency cost at 10M keys, beside redis-server.
bench-snapshot:
	$(CARGO) build --release --bin percore --bin percore-loadtest
	./loadtest/scenarios/snapshot.sh

# What a BGSAVE costs clients while one 10M-element list is saved (percore beside Redis).
bench-bgsave-collection:
	$(CARGO) build --release --bin percore
	./loadtest/scenarios/bgsave-collection.sh

# Server CPU per request of ZADD/ZINCRBY/ZRANGE on a 1M-member sorted set, PFADD, SETBIT
# and MULTI/SET/INCR/EXEC on one and on two shards, beside redis-server (memtier_benchmark).
bench-commands: build
	./loadtest/scenarios/commands.sh
# Pub/Sub fan-out (1 channel x 1,000 subscribers, 1,000 channels x 10 subscribers): delivered
# messages/s, server CPU per 1M delivered and p99 latency, percore on 1 and 2 shards beside
# redis-server and valkey-server (when on PATH), servers pinned to CPU 0 and the generator to 1.
bench-pubsub:
	$(CARGO) build --release --bin percore --bin percore-loadtest
	./loadtest/scenarios/pubsub.sh

# TLS beside plain TCP under redis-benchmark --tls, percore against redis-server's TLS, pinned
# with taskset: server CPU per request and throughput (needs openssl and redis-tools).
bench-tls:
	$(CARGO) build --release --bin percore
	./loadtest/scenarios/tls.sh

# What the ACL check costs per request: the default user against a user with 10 key patterns.
bench-acl:
	$(CARGO) build --release --bin percore --bin percore-loadtest
	./loadtest/scenarios/acl.sh

# Three percore nodes in cluster mode beside three redis-server nodes, under
# memtier_benchmark --cluster-mode (about a minute).
bench-cluster:
	$(CARGO) build --release --bin percore
	./loadtest/scenarios/cluster.sh

# percore beside redis-server under memtier_benchmark, pinned with taskset.
bench-memtier: build
	./loadtest/scenarios/memtier.sh

# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP enables them on the stable toolchain.
# fuzz/corpus/TARGET is kept minimized (`make fuzz-cmin`); fuzz/regressions/TARGET holds the
# inputs that once found a bug, each named for what it found, run by every fuzz run and by
# `make fuzz-regressions`.
fuzz: fuzz-decode fuzz-apply fuzz-snapshot fuzz-rdb-value fuzz-acl-rules

fuzz-regressions:
	cd fuzz && for t in regressions/*; do RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O "$${t#regressions/}" "$$t" -- -runs=0 || exit 1; done

fuzz-cmin:
	cd fuzz && for t in decode apply snapshot rdb_value; do RUSTC_BOOTSTRAP=1 $(CARGO) fuzz cmin -O "$$t" "corpus/$$t" -- -rss_limit_mb=4096 -max_len=65536 || exit 1; done

fuzz-decode:
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O decode corpus/decode -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048

fuzz-apply:
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O apply corpus/apply regressions/apply -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -max_len=4096

fuzz-snapshot:
	mkdir -p fuzz/corpus/snapshot
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O snapshot corpus/snapshot -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -max_len=65536

fuzz-rdb-value:
	mkdir -p fuzz/corpus/rdb_value fuzz/regressions/rdb_value
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O rdb_value corpus/rdb_value regressions/rdb_value -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -max_len=65536

fuzz-acl-rules:
	mkdir -p fuzz/regressions/acl_rules
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O acl_rules corpus/acl_rules regressions/acl_rules -- -max_total_time=$(FUZZ_SECONDS) -max_len=1024

clean:
	$(CARGO) clean
