#!/bin/sh
# /usr/local/bin/fleetkeeper in the image: every fleetkeeper process runs as the unprivileged user
# fleetkeeper (uid 10001), whoever starts it. Fly starts the machine's command as root, and so does
# `fly ssh console -C "fleetkeeper …"`; running both through this one door keeps the database and its
# -wal/-shm files with one owner (a root-owned -wal would lock the service out of its own database).
# Fly mounts the volume root-owned at boot, so the database's folder and files are handed to the user
# first (this also adopts files left by an image that ran as root). Capabilities are all dropped.
set -eu
bin=${FLEETKEEPER_BIN:-/usr/local/libexec/fleetkeeper}
uid=${FLEETKEEPER_UID:-10001}
if [ "$(id -u)" != 0 ]; then
  exec "$bin" "$@"
fi
case "${FLEET_DATABASE:-}" in
  /*)
    dir=$(dirname "$FLEET_DATABASE")
    mkdir -p "$dir"
    chown "$uid:$uid" "$dir"
    for f in "$FLEET_DATABASE" "$FLEET_DATABASE-wal" "$FLEET_DATABASE-shm" "$FLEET_DATABASE-journal"; do
      if [ -e "$f" ]; then chown "$uid:$uid" "$f"; fi
    done
    ;;
esac
exec setpriv --reuid="$uid" --regid="$uid" --clear-groups --inh-caps=-all --bounding-set=-all "$bin" "$@"
