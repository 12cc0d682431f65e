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

# Exit 0: already running; 3: not running; anything else: the cluster is unreachable.
set +e
python3.11 - <<'EOF'
import sys

from connectors.flink_cluster import ClusterError, running_job
from core.config import load_config

config = load_config()
try:
    job = running_job(config)
except ClusterError as exc:
    print(f"submit: {exc}", file=sys.stderr)
    sys.exit(2)
if job:
    print(f"job {config.job_name} already running: {job['jid']} (not starting a second instance)")
    sys.exit(0)
sys.exit(3)
EOF
status=$?
set -e
if [ "$status" -ne 3 ]; then
    exit "$status"
fi

# The same command `feedtrends submit` runs, with the image's Flink instead of
# PyFlink's bin/ and the image's config (python.client.executable included).
exec flink run \
    --detached \
    --jobmanager "$JOBMANAGER" \
    --python "$REPO/jobs/trends.py" \
    --pyFiles "$REPO/core,$REPO/udfs,$REPO/connectors,$REPO/jobs"
