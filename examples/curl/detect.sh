#!/usr/bin/env bash
# Sightline with curl: /v1/detect with a raw body and with multipart, then a job
# with an Idempotency-Key polled until done, and the same key sent again.
#
#   examples/curl/detect.sh [IMAGE [LINE]]
#
# Needs bash and curl 7.76+ (--fail-with-body). Environment: SIGHTLINE_URL (default
# http://127.0.0.1:8080), SIGHTLINE_API_KEY (optional, sent as a Bearer token).
# Stops with a non-zero status at the first step that fails.
set -euo pipefail

url=${SIGHTLINE_URL:-http://127.0.0.1:8080}
url=${url%/}
image=${1:-$(dirname "$0")/../../samples/ng-03.jpg}
line=${2:-line-pc}
case $image in
  *.png | *.PNG) type=image/png ;;
  *.webp | *.WEBP) type=image/webp ;;
  *) type=image/jpeg ;;
esac
auth=()
if [ -n "${SIGHTLINE_API_KEY:-}" ]; then auth=(-H "Authorization: Bearer $SIGHTLINE_API_KEY"); fi

# --fail-with-body: a 4xx/5xx makes curl exit 22 and still hand over the server's
# {"error":{"code","message"}}, shown here before set -e stops the script.
call() {
  local out rc=0
  out=$(curl -sS --fail-with-body --max-time 60 ${auth[@]+"${auth[@]}"} "$@") || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "FAILED: ${!#}: ${out:-no answer}" >&2
    return "$rc"
  fi
  printf '%s\n' "$out"
}
# The answers are compact JSON, so a field is found without jq.
field() { sed -n "s/.*\"$1\":\"\\{0,1\\}\\([^\",}]*\\).*/\\1/p" | head -n 1; }

echo "detect (raw body):"
answer=$(call -X POST -H "Content-Type: $type" --data-binary "@$image" "$url/v1/detect?line=$line")
echo "  verdict=$(field verdict <<<"$answer") request_id=$(field request_id <<<"$answer")"
echo "  $answer"

echo "detect (multipart, field image):"
answer=$(call -F "image=@$image" "$url/v1/detect?line=$line&conf=0.4")
echo "  verdict=$(field verdict <<<"$answer") request_id=$(field request_id <<<"$answer")"

key="curl-$(date +%s)-$$-$RANDOM"
echo "job (Idempotency-Key $key):"
submit() { call -X POST -H "Content-Type: $type" -H "Idempotency-Key: $key" --data-binary "@$image" "$url/v1/jobs?line=$line"; }
answer=$(submit)
job_id=$(field job_id <<<"$answer")
echo "  submitted job_id=$job_id duplicate=$(field duplicate <<<"$answer")"
[ -n "$job_id" ] || { echo "no job_id in $answer" >&2; exit 1; }

state=
for _ in $(seq 1 300); do
  answer=$(call "$url/v1/jobs/$job_id")
  state=$(field state <<<"$answer")
  case $state in
    done) break ;;
    dead) echo "job $job_id is dead: $answer" >&2; exit 1 ;;
  esac
  sleep 0.2
done
[ "$state" = done ] || { echo "job $job_id is still $state after 60 s" >&2; exit 1; }
echo "  job_id=$job_id state=done verdict=$(field verdict <<<"$answer")"

# The same key again (a client retrying after a timeout): the first job, not a new one.
answer=$(submit)
again=$(field job_id <<<"$answer")
duplicate=$(field duplicate <<<"$answer")
echo "  re-sent job_id=$again duplicate=$duplicate"
[ "$again" = "$job_id" ] && [ "$duplicate" = true ] || { echo "the same Idempotency-Key gave $answer" >&2; exit 1; }
echo ok
