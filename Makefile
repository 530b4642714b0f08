# The two commands: `make run` and `make test`. Everything else is optional.
SHELL := /bin/bash
SCENARIO ?= tenx
DURATION ?= 60s

.PHONY: build run test warehouse load self-check bench bench-deps chaos clean

build:
	dotnet build Streams.sln -c Release

## Local cluster (or $$KAFKA_BOOTSTRAP_SERVERS), 2 processors, 2 gateways, demo plan. Ctrl-C stops all.
run:
	bash compose/run-local.sh

## Every test; ends with "N passed, N failed".
test:
	bash tests/run-tests.sh

## The warehouse loader alone, in the foreground, against $$KAFKA_BOOTSTRAP_SERVERS (or what `make run` started):
## slot-events into .run/warehouse.duckdb, or PostgreSQL with WAREHOUSE_POSTGRES=connection-string. `make run` starts one itself.
warehouse:
	dotnet build processors/SlotCapacity.Warehouse/SlotCapacity.Warehouse.csproj -c Release -v quiet -nologo
	KAFKA_BOOTSTRAP_SERVERS=$${KAFKA_BOOTSTRAP_SERVERS:-$$(cat .run/bootstrap 2>/dev/null)} WAREHOUSE_DB=$${WAREHOUSE_DB:-.run/warehouse.duckdb} \
	  dotnet processors/SlotCapacity.Warehouse/bin/Release/net10.0/SlotCapacity.Warehouse.dll

## One load scenario against what `make run` started (or starts it): make load SCENARIO=tenx DURATION=60s
load:
	SCENARIO=$(SCENARIO) DURATION=$(DURATION) bash load/load.sh

## The load harness against a trivial gRPC server: the highest rate it drives itself, its own CPU per call.
self-check:
	dotnet build load/SlotCapacity.Load/SlotCapacity.Load.csproj -c Release -v quiet -nologo && dotnet load/SlotCapacity.Load/bin/Release/net10.0/slot-load.dll self-check

## Installs what the peers need (redis-server, postgresql), once.
bench-deps:
	bash load/bench-deps.sh

## Every scenario against the system, Redis and PostgreSQL, side by side, three runs on fresh systems; results and the runs compared in load/results/bench/.
bench:
	bash load/bench.sh

## The fault suite: every experiment of load/faults at nominal and 10x on a fresh system; results in load/results/faults/.
chaos:
	bash load/chaos.sh

clean:
	dotnet clean Streams.sln -c Release >/dev/null; rm -rf .run
