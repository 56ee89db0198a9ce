#!/usr/bin/env bash
# The container image, built from the Dockerfile and run — no Docker daemon, no registry:
#   1. a minimal Debian bookworm base (debootstrap --variant=minbase: python3, python3-venv,
#      ca-certificates, all Debian's), imported as localhost/bookworm-python:ci. Its tarball is
#      cached outside the clone ($TOCSIN_IMAGE_CACHE, default /var/cache/tocsin-ci) because
#      debootstrap takes minutes and the public registry holding python:3.11-slim-bookworm is
#      not reachable from CI; delete the tarball to rebuild it (e.g. for Debian point releases);
#   2. `buildah bud` of the Dockerfile on that base (--build-arg BASE=...), vfs storage and chroot
#      isolation, so it needs root but no daemon, overlay or user namespaces;
#   3. `tocsin serve` run inside the image as UID 10001 with a host directory as its
#      /var/lib/tocsin volume (as `docker run -v` or a Kubernetes volume would give it), checked
#      from outside: /healthz, /readyz and the image's own HEALTHCHECK, a sample Alertmanager
#      payload answered 200, the SQLite file written under /var/lib/tocsin holding the incident,
#      nothing written anywhere else in the container's root filesystem, a clean exit on SIGTERM;
#   4. the image's size.
# Prints each check; exits non-zero on any failure. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${TOCSIN_IMAGE_CACHE:-/var/cache/tocsin-ci}"
BASE_TAR="$CACHE/bookworm-base.tar"
BASE_IMAGE="localhost/bookworm-python:ci"
IMAGE="localhost/tocsin:ci"
CTR="tocsin-ci-run"
MIRROR="${TOCSIN_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
RECEIVER_TOKEN="ci-receiver-token"
# One storage driver for every call: vfs copies layers (slower, bigger on disk) but works on any
# filesystem, including inside another container where overlay mounts are refused.
B=(buildah --storage-driver vfs)
started=$SECONDS

step() { printf '\n== image: %s (%ss)\n' "$*" "$((SECONDS - started))"; }
ok() { printf 'ok: %s\n' "$*"; }
fail() {
  printf 'FAIL: %s\n' "$*" >&2
  exit 1
}

tmp="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  "${B[@]}" rm "$CTR" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# One run at a time on a machine: runs share the container storage, the image and container
# names and the base tarball.
mkdir -p "$CACHE"
exec 9>"$CACHE/image.lock"
if ! flock -n 9; then
  echo "another .ci/image.sh is running on this machine: waiting for it"
  flock 9
fi

step "tools"
need_apt=()
command -v buildah >/dev/null 2>&1 || need_apt+=(buildah)
command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
buildah --version

step "base image $BASE_IMAGE"
if [ -s "$BASE_TAR" ]; then
  echo "cached: $BASE_TAR ($(du -h "$BASE_TAR" | cut -f1))"
else
  echo "no $BASE_TAR: debootstrap bookworm from $MIRROR (a few minutes, once)"
  rootfs="$tmp/rootfs"
  if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$MIRROR" >"$tmp/debootstrap.log" 2>&1; then
    tail -n 30 "$tmp/debootstrap.log"
    fail "debootstrap"
  fi
  # What the image never needs: downloaded .debs, apt lists, docs (copyright files stay), man
  # pages, translations; and the build host's name and resolver, which debootstrap copies in
  # (a container runtime provides its own, over a minimal /etc/hosts).
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/usr/share/locale/*
  find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  : >"$rootfs/etc/resolv.conf"
  echo localhost >"$rootfs/etc/hostname"
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$rootfs/etc/hosts"
  tar --numeric-owner -C "$rootfs" -cf "$BASE_TAR.tmp" .
  mv -f "$BASE_TAR.tmp" "$BASE_TAR" # atomic: a concurrent run never reads half a tarball
  rm -rf "$rootfs"
  echo "built: $BASE_TAR ($(du -h "$BASE_TAR" | cut -f1))"
fi
# Re-imported only when the tarball changed: the image is labelled with the tarball's digest.
digest="$(sha256sum "$BASE_TAR" | cut -d' ' -f1)"
have="$("${B[@]}" inspect --type image --format '{{index .OCIv1.Config.Labels "org.tocsin.ci.base-tar"}}' \
  "$BASE_IMAGE" 2>/dev/null || true)"
if [ "$have" = "$digest" ]; then
  echo "$BASE_IMAGE is the cached tarball (sha256 $digest)"
else
  c="$("${B[@]}" from scratch)"
  "${B[@]}" add "$c" "$BASE_TAR" / >/dev/null
  "${B[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd '["python3"]' --label "org.tocsin.ci.base-tar=$digest" "$c"
  "${B[@]}" commit -q --rm "$c" "$BASE_IMAGE" >/dev/null
  echo "imported $BASE_TAR as $BASE_IMAGE"
fi
"${B[@]}" rm tocsin-ci-base >/dev/null 2>&1 || true
"${B[@]}" from --pull=never --name tocsin-ci-base "$BASE_IMAGE" >/dev/null
"${B[@]}" run --isolation chroot tocsin-ci-base -- python3 -c 'import platform, ssl, venv; print("python", platform.python_version(), "(Debian)")'
"${B[@]}" rm tocsin-ci-base >/dev/null

step "buildah bud --build-arg BASE=$BASE_IMAGE -t $IMAGE ."
"${B[@]}" rm "$CTR" >/dev/null 2>&1 || true
"${B[@]}" rmi -f "$IMAGE" >/dev/null 2>&1 || true
# The build stage's pip downloads from PyPI: the host's CA bundle replaces the base's for every
# RUN (not kept in the image) so an HTTPS-inspecting proxy the host trusts is trusted too.
# --format docker keeps HEALTHCHECK, which the OCI format drops.
if ! "${B[@]}" bud --isolation chroot --pull=never --format docker \
  --volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
  --build-arg "BASE=$BASE_IMAGE" --build-arg "SOURCE_URL=local" -t "$IMAGE" . \
  >"$tmp/bud.log" 2>&1; then
  tail -n 60 "$tmp/bud.log"
  fail "buildah bud"
fi
grep -E '^\[[0-9]/[0-9]\] STEP|^SUCCESS' "$tmp/bud.log" | cut -c1-140
"${B[@]}" rmi --prune >/dev/null 2>&1 || true # the previous run's image, now untagged
ok "built $IMAGE"

step "run tocsin serve in $IMAGE as UID 10001"
"${B[@]}" from --pull=never --name "$CTR" "$IMAGE" >/dev/null
mnt="$("${B[@]}" mount "$CTR")"
data="$tmp/data"
mkdir -m 0750 "$data"
chown 10001:10001 "$data"
# Every path of the root filesystem with its size, mtime, mode and owner; /tmp may change, and
# /run's own mtime does: buildah run mounts /run/.containerenv on a file it creates and removes.
snapshot() {
  (cd "$mnt" && find . -path ./tmp -prune -o -path ./run -printf '%p %m %U:%G\n' \
    -o -printf '%p %s %T@ %m %U:%G\n' | sort)
}
snapshot >"$tmp/before"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:$port"
# The image's own entrypoint and command, only the listen address moved to a free loopback port
# (the host's network: chroot isolation shares it).
"${B[@]}" run --isolation chroot --network host --user 10001:10001 \
  --volume "$data:/var/lib/tocsin" --env "TOCSIN_RECEIVER_TOKEN=$RECEIVER_TOKEN" "$CTR" -- \
  tocsin serve --config /etc/tocsin/tocsin.yaml --listen "127.0.0.1:$port" >"$tmp/serve.log" 2>&1 &
buildah_pid=$!
# tocsin's process is the leaf under buildah run's chroot helpers (same PID namespace).
leaf() {
  local p="$1" kids
  while kids="$(cat /proc/"$p"/task/*/children 2>/dev/null)" && [ -n "${kids// /}" ]; do
    p="${kids%% *}"
  done
  echo "$p"
}
for _ in $(seq 1 120); do
  if ! kill -0 "$buildah_pid" 2>/dev/null; then
    cat "$tmp/serve.log"
    fail "tocsin serve exited before answering"
  fi
  curl -fsS -o /dev/null "$url/healthz" 2>/dev/null && break
  sleep 0.5
done
server_pid="$(leaf "$buildah_pid")"
uid="$(awk '/^Uid:/ {print $2}' "/proc/$server_pid/status")"
echo "process: $(tr '\0' ' ' <"/proc/$server_pid/cmdline")(pid $server_pid)"
[ "$uid" = 10001 ] || fail "tocsin serve runs as UID $uid, not 10001"
ok "tocsin serve runs as UID 10001, listening on $url"

# GET/POST against the running container; prints the body, fails unless the status is 200.
http() {
  local what="$1" code
  shift
  code="$(curl -sS -o "$tmp/body" -w '%{http_code}' "$@")" || fail "$what: no answer"
  echo "$what -> $code $(head -c 400 "$tmp/body")"
  [ "$code" = 200 ] || fail "$what answered $code"
}
http "GET /healthz" "$url/healthz"
http "GET /readyz" "$url/readyz"
# The HEALTHCHECK's exec form, NUL-separated, from the image's Docker config.
"${B[@]}" inspect --type image "$IMAGE" | python3 -c '
import json, sys
test = json.load(sys.stdin)["Docker"]["config"]["Healthcheck"]["Test"]
assert test[0] == "CMD", test
print("\0".join(test[1:]), end="")' >"$tmp/healthcheck"
mapfile -d '' hc_cmd <"$tmp/healthcheck"
"${B[@]}" run --isolation chroot --network host --user 10001:10001 \
  --volume "$data:/var/lib/tocsin" --env "TOCSIN_HEALTHCHECK_URL=$url/healthz" "$CTR" -- "${hc_cmd[@]}" ||
  fail "the image's HEALTHCHECK failed"
ok "the image's HEALTHCHECK (${hc_cmd[*]:0:2} ...) passes"
http "POST /api/v1/alertmanager (tests/fixtures/alertmanager-0.25-firing.json)" \
  -H "Authorization: Bearer $RECEIVER_TOKEN" -H 'Content-Type: application/json' \
  -H 'User-Agent: Alertmanager/0.25.0' --data-binary @tests/fixtures/alertmanager-0.25-firing.json \
  "$url/api/v1/alertmanager"
incident="$(python3 -c 'import json, sys; (i,) = json.load(open(sys.argv[1]))["incidents"]; assert i["action"] == "opened", i; print(i["incident"])' "$tmp/body")" ||
  fail "the payload opened no incident"
ok "incident $incident opened"

step "stop (SIGTERM, as Kubernetes does) and inspect what was written"
kill -TERM "$server_pid"
rc=0
wait "$buildah_pid" || rc=$?
[ "$rc" = 0 ] || {
  tail -n 20 "$tmp/serve.log"
  fail "tocsin serve exited $rc on SIGTERM"
}
ok "tocsin serve exited 0 on SIGTERM"
grep -q '"msg": "tocsin listening"' "$tmp/serve.log" || fail "no 'tocsin listening' log line"
if grep -q "$RECEIVER_TOKEN" "$tmp/serve.log"; then fail "the receiver token reached the log"; fi
ok "log: $(wc -l <"$tmp/serve.log") JSON lines, no secret"
ls -ln "$data"
[ -f "$data/tocsin.db" ] || fail "no /var/lib/tocsin/tocsin.db"
[ "$(stat -c %u "$data/tocsin.db")" = 10001 ] || fail "tocsin.db is not owned by UID 10001"
python3 - "$data/tocsin.db" "$incident" <<'EOF' || fail "the incident is not in /var/lib/tocsin/tocsin.db"
import sqlite3, sys

db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
(n,) = db.execute("SELECT count(*) FROM incidents WHERE id = ?", (sys.argv[2],)).fetchone()
assert n == 1, n
EOF
ok "/var/lib/tocsin/tocsin.db (UID 10001) holds incident $incident"
snapshot >"$tmp/after"
if ! diff "$tmp/before" "$tmp/after" >"$tmp/diff"; then
  head -n 40 "$tmp/diff"
  fail "the container wrote outside /var/lib/tocsin and /tmp"
fi
ok "nothing written outside /var/lib/tocsin and /tmp ($(wc -l <"$tmp/after") paths compared)"
"${B[@]}" umount "$CTR" >/dev/null

step "image size"
"${B[@]}" images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$BASE_IMAGE"
"${B[@]}" images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$IMAGE"
step "image checks passed"
