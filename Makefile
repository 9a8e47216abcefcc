.PHONY: run test down status lint bench bench-quick

run:      ## start Kafka, PostgreSQL and every component locally
	./scripts/run.sh

test:     ## run the test suite (starts its own Kafka and PostgreSQL)
	./scripts/test.sh

down:     ## stop what `make run` started
	.venv/bin/webhookmaster stack down

status:
	.venv/bin/webhookmaster stack status

lint:     ## ruff check, ruff format --check, mypy --strict on the package code
	./scripts/lint.sh

# SCENARIO=name[ name…] runs only those scenarios (bench/run.py ALL); BASELINE=ref is the git ref
# the subscriptions and fan-out scenarios also run (default main; none when it is this code)
BENCH_ARGS = $(if $(SCENARIO),--only $(SCENARIO)) $(if $(BASELINE),--baseline $(BASELINE))

bench:    ## every benchmark scenario, side by side with its baseline (about 30 minutes)
	./scripts/bench.sh $(BENCH_ARGS)

bench-quick:  ## small versions of the scenarios (a smoke check, a few minutes)
	./scripts/bench.sh --quick $(BENCH_ARGS)
