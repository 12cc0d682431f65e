#!/usr/bin/env bash
# The `submit` service: create the topics, then submit the trends job to the
# compose cluster, unless a job of that name already runs (a second instance would
# share the Kafka sink's transactional-id prefix and fence the first).
#
# Settings come from FEEDTRENDS_* (docker-compose.yml), read by the job itself.
set -euo pipefail

REPO=/opt/feedtrends
JOBMANAGER="${FEEDTRENDS_JOBMANAGER:-jobmanager:8081}"
export FEEDTRENDS_JOBMANAGER="$JOBMANAGER"

feedtrends topics

# Is the job already running?  Prints the answer if it is, nothing if not; a failure is
# one line and the CLI's exit code (feedtrends/exit_codes.py): 3 for a cluster still
# unreachable when the retry deadline passes, 1 for one that refuses the request.
running=$(python3.11 - <<'EOF'
import sys

from connectors.flink_cluster import running_job
from core.config import load_config
from feedtrends.exit_codes import report

try:
    config = load_config()
    job = running_job(config)
except Exception as exc:
    sys.exit(report("submit", exc))
if job:
    print(f"job {config.job_name} already running: {job['jid']} (not starting a second instance)")
EOF
) || exit $?
if [ -n "$running" ]; then
    echo "$running"
    exit 0
fi

# The same command `feedtrends submit` runs, with the image's Flink instead of
# PyFlink's bin/ and the image's config (python.client.executable included).
exec flink run \
    --detached \
    --jobmanager "$JOBMANAGER" \
    --python "$REPO/jobs/trends.py" \
    --pyFiles "$REPO/core,$REPO/udfs,$REPO/connectors,$REPO/jobs"
