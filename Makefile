.PHONY: run test down status lint bench

run:      ## start Kafka, PostgreSQL and every component locally
	./scripts/run.sh

test:     ## run the test suite (starts its own Kafka and PostgreSQL)
	./scripts/test.sh

down:     ## stop what `make run` started
	.venv/bin/webhookmaster stack down

status:
	.venv/bin/webhookmaster stack status

lint:
	.venv/bin/ruff check .
