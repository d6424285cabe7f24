#!/usr/bin/env bash
# make docker-check: build docker/Dockerfile for real and run one active-learning round with the
# image against a real Label Studio on this machine. No Docker engine and no registry here:
# a Debian base made with debootstrap and imported into podman, `podman build`, and
# `buildah run --isolation chroot` to run the image's own command (docs/docker.md).
#
# Settings (environment):
#   BASE_IMAGE  the base passed to the Dockerfile (default: the local Debian base, made once)
#   IMAGE       the tag built and run (default localhost/autoal-backend:check)
#   NO_CACHE=1  rebuild every layer (the build time a fresh machine sees)
#   SKIP_BUILD=1  run the image already built
#   PY          the Python that drives the check (default .venv/bin/python, `make install`)
#   REPORT      where the result goes as JSON (default results/docker-check/last.json)
#   KEEP=1      keep the logs and data of a run that passed (a failed one always keeps them)
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${BASE_IMAGE:-localhost/debian-py311:bookworm}
IMAGE=${IMAGE:-localhost/autoal-backend:check}
ROOTFS=${ROOTFS:-/var/tmp/autoal-debootstrap/bookworm}
PY=${PY:-.venv/bin/python}
REPORT=${REPORT:-results/docker-check/last.json}
# Other people compute on this machine: builds and the servers run at a lower priority.
NICE=(nice -n 10)

say() { echo "[docker-check $(date +%H:%M:%S)] $*"; }

missing=()
for tool in podman buildah debootstrap; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" = 0 ]; then
        say "installing ${missing[*]} from Debian"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah debootstrap
    else
        echo "docker-check needs podman, buildah and debootstrap (as root: apt-get install -y podman buildah debootstrap)" >&2
        exit 2
    fi
fi

# 1. The base: Debian's own packages, no registry (about 1.5-2 min, 272 MB, made once).
base_s=
if ! podman image exists "$BASE_IMAGE"; then
    start=$(date +%s)
    if [ "$BASE_IMAGE" != localhost/debian-py311:bookworm ]; then
        echo "base image $BASE_IMAGE is not in podman's store" >&2
        exit 2
    fi
    say "making the base $BASE_IMAGE with debootstrap in $ROOTFS"
    rm -rf "$ROOTFS"
    mkdir -p "$(dirname "$ROOTFS")"
    "${NICE[@]}" debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$ROOTFS" http://deb.debian.org/debian >"$ROOTFS.log" 2>&1 \
        || { tail -20 "$ROOTFS.log" >&2; exit 1; }
    tar -C "$ROOTFS" -c . | podman import - "$BASE_IMAGE" >/dev/null
    rm -rf "$ROOTFS"
    base_s=$(($(date +%s) - start))
    say "made $BASE_IMAGE in ${base_s} s"
fi

# 2. The build. The machine's certificate bundle and pip settings are mounted for the build
# only (pip finds no versions without them); nothing of them stays in the image.
# --format docker keeps the HEALTHCHECK (the OCI format has none).
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    build=(podman build --format docker --network host --isolation chroot
        --build-arg "BASE_IMAGE=$BASE_IMAGE"
        -v /etc/ssl/certs:/etc/ssl/certs:ro)
    [ -f /etc/pip.conf ] && build+=(-v /etc/pip.conf:/etc/pip.conf:ro)
    [ "${NO_CACHE:-0}" = 1 ] && build+=(--no-cache)
    build+=(-f docker/Dockerfile -t "$IMAGE" .)
    say "building: ${build[*]}"
    start=$(date +%s)
    "${NICE[@]}" "${build[@]}"
    build_s=$(($(date +%s) - start))
    say "built $IMAGE in ${build_s} s"
else
    build_s=
fi
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
say "image size: $size bytes ($(numfmt --to=si --suffix=B "$size"))"

# 3. The image's command against a real Label Studio, and one round end to end.
test -x "$PY" || { echo "no $PY: run make install (or set PY)" >&2; exit 2; }
rc=0
rm -f "$REPORT"
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "${NICE[@]}" "$PY" -m scripts.docker_check \
    --image "$IMAGE" --report "$REPORT" ${KEEP:+--keep} || rc=$?
# The build's figures go beside the run's, in the same report.
[ -f "$REPORT" ] || exit "$rc"
"$PY" - "$REPORT" "$BASE_IMAGE" "$base_s" "$build_s" "$size" "${NO_CACHE:-0}" <<'EOF'
import json, sys
path, base, base_s, build_s, size, no_cache = sys.argv[1:]
report = json.load(open(path))
report.update(
    base_image=base,
    base_s=int(base_s) if base_s else None,
    build_s=int(build_s) if build_s else None,
    build_no_cache=no_cache == "1",
    image_bytes=int(size),
)
json.dump(report, open(path, "w"), indent=2)
print(json.dumps(report, indent=2))
EOF
exit $rc
