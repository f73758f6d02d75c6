#!/usr/bin/env bash
# Build the service's container image, run it, and check that it translates.
#
#   scripts/container-smoke.sh
#
# Builds with container-build and runs with container-run, the podman wrappers in the
# directory NMT_CONTAINER_TOOLS (default: ../shared/tools beside the repository). When
# those tools or podman are missing, it prints why and exits 77 (the exit status that
# Automake and Meson test harnesses read as "skipped") without checking anything.
# The image needs a model in models/hi-en.
#
# Environment:
#   NMT_CONTAINER_TOOLS   directory with container-build and container-run
#   NMT_SMOKE_IMAGE       image tag to build (default: localhost/hindi-nmt:smoke)
#   NMT_SMOKE_PORT        loopback port to publish the service on (default: 18080)
#   NMT_SMOKE_TIMEOUT_S   seconds to wait for /health and for /ready (default: 180)
#   NMT_SMOKE_EXPECT_ENGLISH  1 (default) requires Latin letters in the translation;
#                         0 accepts any non-empty text, for a random test model
#   TORCH_SPEC            pip arguments for torch, passed as the build argument of that name
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
tools=${NMT_CONTAINER_TOOLS:-$repo/../shared/tools}
image=${NMT_SMOKE_IMAGE:-localhost/hindi-nmt:smoke}
port=${NMT_SMOKE_PORT:-18080}
timeout_s=${NMT_SMOKE_TIMEOUT_S:-180}
expect_english=${NMT_SMOKE_EXPECT_ENGLISH:-1}
container="nmt-smoke-$$"
base_url="http://127.0.0.1:$port"

if ! command -v podman >/dev/null; then
  echo "container-smoke: skipped: podman is not installed (run $tools/container-setup)" >&2
  exit 77
fi
if [ ! -x "$tools/container-build" ] || [ ! -x "$tools/container-run" ]; then
  echo "container-smoke: skipped: no container-build and container-run in $tools" \
       "(set NMT_CONTAINER_TOOLS to their directory)" >&2
  exit 77
fi
for file in model.safetensors config.json tokenizer.model metadata.json; do
  if [ ! -f "$repo/models/hi-en/$file" ]; then
    echo "container-smoke: models/hi-en/$file is missing; the image needs the model" >&2
    exit 1
  fi
done

cleanup() {
  podman --runtime runc rm -f "$container" >/dev/null 2>&1 || true
}
trap cleanup EXIT

fail() {
  echo "container-smoke: FAILED: $*" >&2
  echo "container-smoke: container log:" >&2
  podman --runtime runc logs "$container" >&2 || true
  exit 1
}

# Request URL [BODY]: print the response body; exit 1 on a connection error or non-2xx status.
request() {
  python3 - "$@" <<'PY'
import sys, urllib.request
url = sys.argv[1]
data = sys.argv[2].encode() if len(sys.argv) > 2 else None
headers = {"Content-Type": "application/json"} if data else {}
with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=60) as response:
    sys.stdout.write(response.read().decode())
PY
}

# wait_for PATH: poll until PATH returns 2xx. Stop early when the model failed to load.
wait_for() {
  python3 - "$base_url$1" "$timeout_s" <<'PY' || fail "$1 did not become available"
import sys, time, urllib.error, urllib.request
url, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=10):
            sys.exit(0)
    except urllib.error.HTTPError as error:
        body = error.read().decode(errors="replace")
        if '"failed"' in body:
            sys.exit(f"{url} returned {error.code}: {body}")
    except OSError:
        pass  # not listening yet
    time.sleep(2)
sys.exit(f"{url} did not return 2xx within {sys.argv[2]} s")
PY
}

echo "container-smoke: building $image"
build_args=(--format docker)  # the docker format keeps the HEALTHCHECK instruction
if [ -n "${TORCH_SPEC:-}" ]; then
  build_args+=(--build-arg "TORCH_SPEC=$TORCH_SPEC")
fi
"$tools/container-build" "$image" "$repo" "${build_args[@]}"

echo "container-smoke: starting $container on $base_url"
"$tools/container-run" -d --name "$container" -p "127.0.0.1:$port:8000" "$image" >/dev/null

wait_for /health
wait_for /ready
echo "container-smoke: /health and /ready answer"

response=$(request "$base_url/translate" '{"text": "नमस्ते, आप कैसे हैं?"}') \
  || fail "POST /translate failed"
echo "container-smoke: /translate returned $response"
python3 - "$response" "$expect_english" <<'PY' || fail "the translation is not what was expected"
import json, re, sys
translation = json.loads(sys.argv[1])["translation"]
if not translation.strip():
    sys.exit("empty translation")
if sys.argv[2] == "1" and not re.search("[A-Za-z]", translation):
    sys.exit(f"no English in the translation {translation!r}")
PY

uid=$(podman --runtime runc exec "$container" id -u) || fail "podman exec id -u failed"
[ "$uid" != "0" ] || fail "the service runs as root"
echo "container-smoke: the service runs as uid $uid"

podman --runtime runc healthcheck run "$container" >/dev/null || fail "HEALTHCHECK failed"
echo "container-smoke: HEALTHCHECK passes"
echo "container-smoke: OK"
