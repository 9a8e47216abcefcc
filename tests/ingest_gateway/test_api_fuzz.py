"""Property-based API test: schemathesis drives the real gateway (real Kafka, real PostgreSQL)
from the OpenAPI document it serves, and fails on any 5xx or any response the document does not
describe (status code, content type, headers, body schema).

Bounded and deterministic: derandomized generation (schemathesis's deterministic mode), a few
dozen examples per operation. The stateless phases (examples, coverage, fuzzing) cover every
operation; the stateful phase follows the document's OpenAPI links (create a subscription, then
read, change, ingest into and delete it).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from tests.support.gateway import LiveGateway
from tests.support.processes import run_bounded

# More for a deeper local run: WM_FUZZ_MAX_EXAMPLES=200 pytest tests/ingest_gateway/test_api_fuzz.py
MAX_EXAMPLES = os.environ.get("WM_FUZZ_MAX_EXAMPLES", "25")
# Far above what the run takes; only a hung run reaches it.
RUN_TIMEOUT_S = 600
# Conformance to the document, and schema-invalid input refused. Not positive_data_acceptance:
# schema-valid requests can still be refused for what a schema cannot say (an opaque cursor
# that is not one of ours, a missing or wrong X-Hub-Signature-256), with a documented 400/401.
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
    ]
)


async def _schemathesis(gateway: LiveGateway, phases: str, workdir: Path) -> tuple[int, str]:
    """Run the schemathesis CLI (in ``workdir``: it keeps a cache there) against ``gateway``."""
    args = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{gateway.url}/api/openapi.json",
        "--phases",
        phases,
        "--checks",
        CHECKS,
        "--max-examples",
        MAX_EXAMPLES,
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "all",
        "--no-color",
        "--output-truncate",
        "false",
    ]
    code, out, _ = await run_bounded(*args, timeout=RUN_TIMEOUT_S, cwd=workdir, merge_stderr=True)
    return code, out.decode(errors="replace")


async def test_every_operation_matches_the_document(gateway: LiveGateway, tmp_path: Path) -> None:
    code, output = await _schemathesis(gateway, "examples,coverage,fuzzing", tmp_path)
    assert code == 0, output[-20_000:]
    # every operation schemathesis loaded was selected and tested
    loaded = re.search(r"Operations:\s+(\d+) selected / (\d+) total", output)
    tested = re.search(r"Tested:\s+(\d+)", output)
    assert loaded is not None and tested is not None, output[-5_000:]
    assert int(tested.group(1)) == int(loaded.group(1)) == int(loaded.group(2)) > 10


async def test_stateful_sequences_match_the_document(gateway: LiveGateway, tmp_path: Path) -> None:
    code, output = await _schemathesis(gateway, "stateful", tmp_path)
    assert code == 0, output[-20_000:]
    covered = re.search(r"API Links:\s+(\d+) covered", output)
    assert covered is not None and int(covered.group(1)) > 0, output[-5_000:]
