#!/usr/bin/env bash
# A single-node Slurm on localhost for the profile test: munge, MariaDB + slurmdbd (so that sacct
# works, as on a real cluster), slurmctld and slurmd, all under one state folder.
#   local_slurm.sh install      apt-get install the Debian packages (root; needs the Debian registry)
#   local_slurm.sh start DIR    configure under DIR and start; prints `export SLURM_CONF=...`
#   local_slurm.sh stop DIR     stop every daemon started under DIR
set -euo pipefail
cmd=${1:?usage: local_slurm.sh install|start DIR|stop DIR}
PKGS="slurm-wlm slurmdbd munge mariadb-server"

install() {
  if command -v slurmctld >/dev/null && command -v slurmdbd >/dev/null && command -v mariadbd >/dev/null; then
    return 0
  fi
  [ "$(id -u)" = 0 ] || { echo "local_slurm: installing $PKGS needs root" >&2; exit 3; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq $PKGS >/dev/null
}

wait_for() {  # wait_for SECONDS CMD...: retry CMD until it succeeds
  local t=$1; shift
  for _ in $(seq "$t"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  echo "local_slurm: timed out waiting for: $*" >&2; return 1
}

start() {
  local dir=$1 host cpus mem_mb
  mkdir -p "$dir"/{spool/ctld,spool/d,log,run,db,dbrun,munge}
  dir=$(cd "$dir" && pwd)
  host=$(hostname -s); cpus=$(nproc)
  mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))

  # munge: a fresh key in the state folder, the default socket (every Slurm client looks there).
  mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chown -R munge:munge "$dir/munge"; chmod 711 "$dir/munge"; chmod 400 "$dir/munge/munge.key"
  runuser -u munge -- munged --key-file="$dir/munge/munge.key" --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/seed"

  # MariaDB for slurmdbd's accounting (sacct reads it).
  chown -R mysql:mysql "$dir/db" "$dir/dbrun"
  mariadb-install-db --user=mysql --datadir="$dir/db" --auth-root-authentication-method=socket >/dev/null
  runuser -u mysql -- mariadbd --datadir="$dir/db" --socket="$dir/dbrun/mysql.sock" --skip-networking=0 \
    --bind-address=127.0.0.1 --port=33061 --pid-file="$dir/dbrun/mysqld.pid" --log-error="$dir/dbrun/mysqld.log" >/dev/null 2>&1 &
  wait_for 60 mariadb --socket="$dir/dbrun/mysql.sock" -e "select 1"
  mariadb --socket="$dir/dbrun/mysql.sock" -e "
    CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"

  cat > "$dir/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=33061
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
LogFile=$dir/log/slurmdbd.log
PidFile=$dir/run/slurmdbd.pid
CONF
  chmod 600 "$dir/slurmdbd.conf"

  cat > "$dir/slurm.conf" <<CONF
ClusterName=ccltest
SlurmctldHost=$host(127.0.0.1)
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$dir/spool/ctld
SlurmdSpoolDir=$dir/spool/d
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobCompType=jobcomp/none
AccountingStoreFlags=job_comment
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  # Slurm reads cgroup.conf only with cgroup plugins; an empty plugstack keeps spank quiet.
  : > "$dir/plugstack.conf"
  echo "PlugStackConfig=$dir/plugstack.conf" >> "$dir/slurm.conf"

  export SLURM_CONF=$dir/slurm.conf
  # Job steps (srun inside a batch job) look for the config at the default path, whatever the
  # submitter's environment says: link ours there unless a real one is installed.
  if [ ! -e /etc/slurm/slurm.conf ] || [ -L /etc/slurm/slurm.conf ]; then
    mkdir -p /etc/slurm && ln -sfn "$dir/slurm.conf" /etc/slurm/slurm.conf
  fi
  slurmdbd   # reads slurmdbd.conf beside $SLURM_CONF
  wait_for 60 sacctmgr -i show cluster
  sacctmgr -i add cluster ccltest >/dev/null 2>&1 || true
  sacctmgr -i add account ccl Cluster=ccltest >/dev/null 2>&1 || true
  sacctmgr -i add user root Account=ccl >/dev/null 2>&1 || true
  slurmctld -f "$dir/slurm.conf"
  slurmd -f "$dir/slurm.conf"
  wait_for 60 bash -c "sinfo -h -N -o '%T' | grep -Eq '^(idle|mixed|allocated)'"
  echo "export SLURM_CONF=$dir/slurm.conf"
}

stop() {
  local dir=$1
  for pidfile in run/slurmd run/slurmctld run/slurmdbd dbrun/mysqld; do
    [ -f "$dir/$pidfile.pid" ] && kill "$(cat "$dir/$pidfile.pid")" 2>/dev/null || true
  done
  [ -f "$dir/munge/munged.pid" ] && kill "$(cat "$dir/munge/munged.pid")" 2>/dev/null || true
  if [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$dir/slurm.conf" ]; then rm -f /etc/slurm/slurm.conf; fi
  sleep 1
}

case $cmd in
  install) install ;;
  start) start "${2:?state folder}" ;;
  stop) stop "${2:?state folder}" ;;
  *) echo "usage: local_slurm.sh install|start DIR|stop DIR" >&2; exit 2 ;;
esac
