#!/usr/bin/env bash
# A real single-node Slurm cluster under a private directory, for tests and CI.
#
#   scripts/local-slurm.sh start DIR [--gpus N]   install (apt, if missing) and start; idempotent
#   scripts/local-slurm.sh stop DIR               cancel its jobs, stop exactly the daemons it started
#   scripts/local-slurm.sh status DIR             exit 0 if its daemons are alive and the node is up
#   scripts/local-slurm.sh env DIR                print `export SLURM_CONF=...`
#
# Debian's slurmctld + slurmd + munged, started by hand (no systemd, no cgroups), all state under
# DIR (etc/ log/ run/ state/ spool/ munge/ fakedev/). Two partitions on the one node: debug (the
# default) and long, so a test can send steps to different partitions. Daemons are stopped by the
# PIDs recorded in DIR/run/*.pid, and only while /proc/PID/comm still names that daemon. Fake GPUs (--gpus N) are
# gres entries backed by symlinks to /dev/null: Slurm schedules them, nothing computes on them.
# Facts and pitfalls: ../shared/reference/slurm-local.md.
set -euo pipefail

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1; D=$(mkdir -p "$2" && cd "$2" && pwd); shift 2
GPUS=0
while [ $# -gt 0 ]; do
  case $1 in
    --gpus) GPUS=$2; shift 2 ;;
    *) echo "local-slurm: unknown option $1" >&2; exit 2 ;;
  esac
done
CONF=$D/etc/slurm.conf
export SLURM_CONF=$CONF
# munged wants every directory above its socket to be searchable by all; DIR may sit in a private
# tree (pytest's tmp), so the socket lives in its own world-searchable directory under /tmp.
SOCKDIR=${LOCAL_SLURM_SOCKDIR:-/tmp/local-slurm-$(printf %s "$D" | md5sum | cut -c1-12)}
SOCK=$SOCKDIR/munge.socket

alive() {  # alive NAME: the recorded pid runs that daemon and is not a zombie
  local f=$D/run/$1.pid pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -r "/proc/$pid/comm" ] || return 1
  [ "$(cat "/proc/$pid/comm")" = "$1" ] || return 1
  ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}

install_packages() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    && command -v sbatch >/dev/null && return 0
  # Keep the packages' postinst from starting system-wide daemons.
  local made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    munge slurmctld slurmd slurm-client >/dev/null
  [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  return 0
}

write_config() {
  mkdir -p "$D"/{etc,log,run,state,spool/slurmd,munge,fakedev}
  mkdir -p "$SOCKDIR"; chmod 755 "$SOCKDIR"
  if [ ! -s "$D/munge/munge.key" ]; then
    head -c 1024 /dev/urandom > "$D/munge/munge.key"; chmod 400 "$D/munge/munge.key"
  fi
  local cpus mem gres_line="" node_gres=""
  cpus=$(nproc)
  # RealMemory: min(90% of RAM, MemAvailable) in whole GiB, so the config is stable run to run.
  mem=$(awk '/MemTotal/ {t=$2} /MemAvailable/ {a=$2} END {m=(t*0.9<a)?t*0.9:a; print int(m/1048576)*1024}' /proc/meminfo)
  if [ "$GPUS" -gt 0 ]; then
    : > "$D/etc/gres.conf"
    for i in $(seq 0 $((GPUS - 1))); do
      ln -sfn /dev/null "$D/fakedev/nvidia$i"
      echo "NodeName=localhost Name=gpu File=$D/fakedev/nvidia$i" >> "$D/etc/gres.conf"
    done
    gres_line="GresTypes=gpu"
    node_gres="Gres=gpu:$GPUS"
  fi
  cat > "$CONF" <<EOF
ClusterName=cryoglean-test
SlurmctldHost=localhost
SlurmctldPort=${SLURMCTLD_PORT:-6817}
SlurmdPort=${SLURMD_PORT:-6818}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool/slurmd
SlurmctldPidFile=$D/run/slurmctld.daemon.pid
SlurmdPidFile=$D/run/slurmd.daemon.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
MinJobAge=600
KillWait=5
DependencyParameters=kill_invalid_depend
ScronParameters=enable
$gres_line
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem $node_gres State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=long Nodes=localhost MaxTime=INFINITE State=UP
EOF
}

start() {
  if alive munged && alive slurmctld && alive slurmd; then
    echo "local-slurm: already running under $D"; return 0
  fi
  install_packages
  stop_daemons
  write_config
  setsid munged -F --socket="$SOCK" --key-file="$D/munge/munge.key" \
    --pid-file="$D/run/munged.daemon.pid" --seed-file="$D/munge/munged.seed" \
    </dev/null >>"$D/log/munged.out" 2>&1 &
  echo $! > "$D/run/munged.pid"
  for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
  if ! alive munged; then echo "local-slurm: munged did not start: $(tail -n 1 "$D/log/munged.out")" >&2; return 1; fi
  setsid slurmctld -D -i -f "$CONF" </dev/null >>"$D/log/slurmctld.out" 2>&1 &
  echo $! > "$D/run/slurmctld.pid"
  setsid slurmd -D -N localhost -f "$CONF" </dev/null >>"$D/log/slurmd.out" 2>&1 &
  echo $! > "$D/run/slurmd.pid"
  # Plain `sbatch` works without SLURM_CONF when /etc/slurm/slurm.conf is free.
  if [ ! -e /etc/slurm/slurm.conf ] && [ -d /etc/slurm ]; then
    ln -s "$CONF" /etc/slurm/slurm.conf && echo "/etc/slurm/slurm.conf" > "$D/run/symlink"
  fi
  for _ in $(seq 100); do
    state=$(sinfo -h -N -o '%T' 2>/dev/null | head -n1 || true)
    case $state in idle|mixed|allocated) echo "local-slurm: node $state under $D"; return 0 ;; esac
    sleep 0.2
  done
  echo "local-slurm: node did not come up; logs in $D/log" >&2
  tail -n 5 "$D"/log/*.log >&2 || true
  stop_daemons
  return 1
}

stop_daemons() {
  local name pid
  for name in slurmd slurmctld munged; do
    if alive "$name"; then
      pid=$(cat "$D/run/$name.pid")
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 100); do alive "$name" || break; sleep 0.1; done
      alive "$name" && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$D/run/$name.pid"
  done
}

stop() {
  if alive slurmctld; then scancel --full -u "$(id -un)" 2>/dev/null || true; sleep 1; fi
  # slurmstepd outlives slurmd by design: end the ones that belong to this cluster.
  for p in $(pgrep -x slurmstepd 2>/dev/null || true); do
    if tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "SLURM_CONF=$CONF"; then
      pkill -TERM -P "$p" 2>/dev/null || true; kill -KILL "$p" 2>/dev/null || true
    fi
  done
  stop_daemons
  rm -rf "$SOCKDIR"
  if [ -f "$D/run/symlink" ]; then
    [ -L /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" = "$CONF" ] && rm -f /etc/slurm/slurm.conf
    rm -f "$D/run/symlink"
  fi
  echo "local-slurm: stopped daemons under $D"
}

case $cmd in
  start) start ;;
  stop) stop ;;
  status) alive munged && alive slurmctld && alive slurmd && sinfo -h >/dev/null ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) usage ;;
esac
