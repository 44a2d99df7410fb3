#!/usr/bin/env bash
# The life of one dots volume, on this machine: `make demo`.
# Starts `dots local` in the background, drives it with the dots client,
# prints each step with its duration and a summary, and tears everything
# down. Exits non-zero if any step fails.
set -euo pipefail

DOTS=${DOTS:-bin/dots}
STATE=$(mktemp -d /var/tmp/dots-demo.XXXXXX)
export DOTS_STATE_DIR=$STATE
LOG=$STATE/local.log
MNT=$STATE/pods/demo-mount
LOCAL_PID=""
declare -a SUMMARY=()

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# step NAME CMD...: run a step, show its output and duration, record it.
step() {
  local name=$1; shift
  say "$name"
  if [ "$1" = "$DOTS" ]; then echo "\$ dots ${*:2}"; else echo "\$ $*"; fi
  local t0 t1 rc=0
  t0=$(date +%s.%N)
  "$@" || rc=$?
  t1=$(date +%s.%N)
  local ms; ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%d", (b-a)*1000}')
  if [ $rc -ne 0 ]; then
    SUMMARY+=("$(printf '%-52s %8s ms  FAILED' "$name" "$ms")")
    echo "step failed (exit $rc)"; exit $rc
  fi
  SUMMARY+=("$(printf '%-52s %8s ms  ok' "$name" "$ms")")
  echo "($ms ms)"
}

# expect WHAT ACTUAL WANTED: fail the demo when an observed value is wrong.
expect() {
  if [ "$2" != "$3" ]; then echo "FAILED: $1: got '$2', want '$3'"; return 1; fi
  echo "checked: $1 = '$3'"
}

teardown() {
  local rc=$?
  if [ -n "$LOCAL_PID" ] && kill -0 "$LOCAL_PID" 2>/dev/null; then
    say "stop dots local (SIGTERM) and check nothing is left"
    kill -TERM "$LOCAL_PID"
    wait "$LOCAL_PID" || { echo "dots local exited with $?"; rc=1; }
  fi
  local left=""
  grep -q "$STATE" /proc/self/mountinfo && left="mounts under $STATE"
  # dots local names its pools after a hash of the state directory.
  local prefix; prefix="dotslocal-$(printf %s "$STATE" | sha256sum | cut -c1-8)-"
  zpool list -H -o name 2>/dev/null | grep -q "^$prefix" && left="$left pools $prefix*"
  pgrep -f "ganesha.nfsd.*$STATE" >/dev/null && left="$left ganesha processes"
  if [ -n "$left" ]; then echo "LEFT BEHIND: $left"; rc=1; else echo "clean: no mounts, pools or NFS servers left"; fi
  if [ ${#SUMMARY[@]} -gt 0 ]; then
    say "summary"
    printf '%-52s %11s  %s\n' STEP DURATION RESULT
    printf '%s\n' "${SUMMARY[@]}"
  fi
  [ $rc -eq 0 ] && rm -rf "$STATE" || echo "state and logs kept in $STATE"
  exit $rc
}
trap teardown EXIT

start_local() {
  "$DOTS" local --state-dir "$STATE" --pool-size 4Gi >"$LOG" 2>&1 &
  LOCAL_PID=$!
  for _ in $(seq 600); do
    if grep -q '^ready ' "$LOG"; then grep '^ready ' "$LOG"; return 0; fi
    kill -0 "$LOCAL_PID" 2>/dev/null || { cat "$LOG"; return 1; }
    sleep 0.2
  done
  echo "dots local not ready after 120 s"; tail -20 "$LOG"; return 1
}

volume_id() { sed -n 's/^ *"id": "\(.*\)",$/\1/p' | head -1; }

step "start dots local (2 servers, 4 GiB pools)" start_local
step "list storage servers" "$DOTS" servers

step "create a 1 GiB volume" "$DOTS" volume create demo-data --size 1Gi -o json
VOL=$("$DOTS" volume list -o json | volume_id)
step "show where it is exported ($VOL)" "$DOTS" volume get "$VOL"
refused() {
  local out
  if out=$("$DOTS" volume cat "$VOL" hello.txt 2>&1); then
    echo "FAILED: an unpublished volume let this node read"; return 1
  fi
  case "$out" in *"access denied"*) echo "checked: refused ($(printf '%s' "$out" | grep -o 'access denied' | head -1))" ;;
    *) echo "FAILED: refused for another reason: $out"; return 1 ;; esac
}
step "its export refuses this node until it is published" refused
step "publish it to this node, as the attacher would" "$DOTS" volume publish "$VOL"

printf 'version 1: written before the snapshot\n' >"$STATE/v1.txt"
step "write a file through NFS" "$DOTS" volume put "$VOL" hello.txt --from "$STATE/v1.txt"
step "read it back through NFS" "$DOTS" volume cat "$VOL" hello.txt
step "snapshot the volume" "$DOTS" snapshot create "$VOL" demo-snap
SNAP=${VOL%%/*}/demo-snap

printf 'written after the snapshot\n' >"$STATE/v2.txt"
step "write a second file after the snapshot" "$DOTS" volume put "$VOL" after.txt --from "$STATE/v2.txt"
step "restore the snapshot into a new volume of its size" "$DOTS" snapshot restore "$SNAP" demo-restored
RESTORED=${VOL%%/*}/demo-restored
step "publish the restored volume to this node" "$DOTS" volume publish "$RESTORED"
check_restore() {
  local out
  expect "hello.txt in the restored volume" "$("$DOTS" volume cat "$RESTORED" hello.txt)" "version 1: written before the snapshot"
  if out=$("$DOTS" volume cat "$RESTORED" after.txt 2>&1); then
    echo "FAILED: after.txt, written after the snapshot, is in the restored volume"; return 1
  fi
  case "$out" in *NOENT*) ;; *) echo "FAILED: reading after.txt failed for another reason: $out"; return 1 ;; esac
  echo "checked: after.txt is not in the restored volume"
  expect "after.txt in the original volume" "$("$DOTS" volume cat "$VOL" after.txt)" "written after the snapshot"
}
step "compare the restored and the original volume" check_restore

step "expand the volume to 2 GiB" "$DOTS" volume expand "$VOL" --size 2Gi
check_size() { expect "capacity after expansion" "$("$DOTS" volume get "$VOL" -o json | sed -n 's/.*"capacityBytes": \([0-9]*\).*/\1/p')" "$((2 << 30))"; }
step "check the new capacity" check_size

step "mount the volume as a node would" "$DOTS" volume mount "$VOL" "$MNT"
step "read volume stats from the mount" "$DOTS" volume stats "$VOL" "$MNT"
step "unmount it" "$DOTS" volume unmount "$VOL" "$MNT"
unpublish_both() { "$DOTS" volume unpublish "$VOL" && "$DOTS" volume unpublish "$RESTORED"; }
step "unpublish both volumes from this node" unpublish_both
step "the export refuses this node again" refused

step "list volumes" "$DOTS" volume list
step "list snapshots" "$DOTS" snapshot list
step "delete the restored volume" "$DOTS" volume delete "$RESTORED"
step "delete the snapshot" "$DOTS" snapshot delete "$SNAP"
step "delete the volume" "$DOTS" volume delete "$VOL"
check_empty() { expect "volumes left" "$("$DOTS" volume list -o json | tr -d ' \n')" "[]"; }
step "nothing is left" check_empty
