#!/usr/bin/env bash
# A private single-node Slurm cluster for the CI test (munged + slurmctld + slurmd, no systemd, no
# cgroups), after /work/shared/recipes' tested single-node recipe, but with everything (config, key,
# sockets, ports, spool, logs, pid files) inside one folder, so it never touches /etc/slurm or a
# munged/slurmctld already running on the machine.
#   cluster.sh start DIR [CPUS]   prints the lines to `eval` (SLURM_CONF=...) once the node is idle
#   cluster.sh stop DIR           kills the daemons started in DIR (by their pid files)
# Needs root (slurmd) and the Debian packages slurm-wlm and munge (scripts/setup.sh installs them).
set -euo pipefail
cmd=$1 dir=$2

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() {
  local cpus=${1:-2} node mem ctld_port slurmd_port
  node=$(hostname -s)
  mkdir -p "$dir"/{munge,spool/ctld,spool/d,log}
  chmod 0755 "$dir"   # munged runs as the munge user and must reach its folder

  # munge: own key, socket and pid file; munged refuses to run as root, hence the munge user.
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chown -R munge:munge "$dir/munge" && chmod 0755 "$dir/munge" && chmod 0400 "$dir/munge/munge.key"
  runuser -u munge -- /usr/sbin/munged --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.sock" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed"
  for _ in $(seq 50); do munge -S "$dir/munge/munge.sock" -n | unmunge -S "$dir/munge/munge.sock" >/dev/null 2>&1 && break; sleep 0.1; done

  ctld_port=$(free_port); slurmd_port=$(free_port)
  mem=$(awk '/MemTotal/ {print int($2 / 1024 / 2)}' /proc/meminfo)  # half the RAM: plenty for the tiny jobs
  cat > "$dir/slurm.conf" <<CONF
ClusterName=evoqci
SlurmctldHost=${node}(127.0.0.1)
SlurmctldPort=${ctld_port}
SlurmdPort=${slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: a requeued job may start again after cred_expire + 1 s (default 120 s)
AuthInfo=socket=${dir}/munge/munge.sock,cred_expire=10
MpiDefault=pmix
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1
DependencyParameters=kill_invalid_depend
EnforcePartLimits=ALL
JobRequeue=1
KillWait=60
SlurmdParameters=config_overrides
MinJobAge=300
MailProg=/bin/true
ReturnToService=2
StateSaveLocation=${dir}/spool/ctld
SlurmdSpoolDir=${dir}/spool/d
SlurmctldPidFile=${dir}/slurmctld.pid
SlurmdPidFile=${dir}/slurmd.pid
SlurmctldLogFile=${dir}/log/slurmctld.log
SlurmdLogFile=${dir}/log/slurmd.log
NodeName=${node} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=ci Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF=$dir/slurm.conf
  /usr/sbin/slurmctld -c -f "$SLURM_CONF"
  /usr/sbin/slurmd -f "$SLURM_CONF"
  for _ in $(seq 150); do
    [ "$(sinfo -h -n "$node" -o %t 2>/dev/null)" = idle ] && break; sleep 0.2
  done
  if [ "$(sinfo -h -n "$node" -o %t 2>/dev/null)" != idle ]; then
    echo "cluster.sh: node $node did not become idle; logs in $dir/log" >&2
    tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
    return 1
  fi
  echo "export SLURM_CONF=$SLURM_CONF"
}

stop() {
  local f pid
  for f in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
    [ -s "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
}

case "$cmd" in
  start) start "${3:-2}" ;;
  stop) stop ;;
  *) echo "usage: cluster.sh start|stop DIR [CPUS]" >&2; exit 2 ;;
esac
