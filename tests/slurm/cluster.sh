#!/usr/bin/env bash
# A private Slurm cluster of N compute nodes on this one machine, for the CI tests: munged, slurmctld
# and one slurmd per node, no systemd, no cgroups, after /work/shared/recipes' tested single-node
# recipe. Every node is a network namespace of its own (own address, own hostname through a UTS
# namespace); slurmctld and the Slurm client commands live in a further namespace that holds the
# bridge joining the nodes:
#
#     ctl namespace:  br0 10.177.0.1  (slurmctld; sbatch/squeue/... via `cluster.sh exec`)
#        |-- veth -- node namespace evoqn1: eth0 10.177.0.11, hostname evoqn1, slurmd -N evoqn1
#        `-- veth -- node namespace evoqn2: eth0 10.177.0.12, hostname evoqn2, slurmd -N evoqn2
#
# The namespaces have no link to the machine's own network (the root namespace gets no interface and
# no route), so nothing can leave the machine and the addresses cannot clash with real ones. munge
# (a Unix socket) and the file system are shared, as on a cluster with a shared file system. Config,
# key, sockets, spool, logs and pid files live in DIR; /etc is never touched.
#
#   cluster.sh start DIR [NODES] [CPUS]  starts it, NODES (default 1) nodes of CPUS (default 2) CPUs,
#                                        and prints the lines to `eval` once every node is idle:
#                                        SLURM_CONF=... and EVOQ_CTL_NS=... (the ctl namespace)
#   cluster.sh exec DIR CMD...           runs CMD in the ctl namespace (Slurm client commands)
#   cluster.sh node-kill DIR I           node I fails: SIGKILL to its slurmd and to every job process on
#                                        it (the ranks); its slurmstepds stay and report the deaths
#   cluster.sh node-start DIR I          starts node I's slurmd again (after node-kill)
#   cluster.sh stop DIR                  kills everything started in DIR and removes its namespaces
# Exit status 77 from start when the kernel refuses network namespaces. Needs root and the Debian
# packages slurm-wlm, munge and iproute2.
set -euo pipefail
cmd=$1 dir=$2
subnet=10.177.0
export SLURM_CONF=$dir/slurm.conf   # for the client commands run here
node_name() { echo "evoqn$1"; }
node_ns() { echo "$(cat "$dir/tag")-n$1"; }
ctl_ns() { echo "$(cat "$dir/tag")-ctl"; }
# in_ns NS CMD...: runs CMD in network namespace NS only (`ip netns exec` would also remount /sys, which
# hides the cgroup mounts that slurmd looks for).
in_ns() { local ns=$1; shift; nsenter --net="/run/netns/$ns" -- "$@"; }

start_slurmd() {
  local i=$1 name
  name=$(node_name "$i")
  # Own UTS namespace: `hostname` in the jobs' processes says which node they run on.
  mkdir -p "$dir/spool/$name" "$dir/tmp/$name"
  in_ns "$(node_ns "$i")" unshare --uts -- sh -c "hostname $name && exec /usr/sbin/slurmd -N $name -f '$dir/slurm.conf'" ||
    { echo "cluster.sh: slurmd of $name failed to start:" >&2; tail -n 5 "$dir/log/slurmd-$name.log" >&2; return 1; }
}

# wait_idle NODE...: until every node is idle (fails after 60 s with the daemon logs).
wait_idle() {
  local n state
  for n in "$@"; do
    for _ in $(seq 300); do
      state=$(in_ns "$(ctl_ns)" sinfo -h -n "$n" -o %t 2>/dev/null || true)
      [ "$state" = idle ] && break
      sleep 0.2
    done
    if [ "$state" != idle ]; then
      echo "cluster.sh: node $n did not become idle (state '$state'); logs in $dir/log" >&2
      tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd-$n.log" >&2 || true
      return 1
    fi
  done
}

# make_network NODES: the namespaces, the bridge and the veth pairs (each step checked: this runs
# as an `if` condition, where set -e does not apply).
make_network() {
  local nodes=$1 ctl i
  ctl=$(ctl_ns)
  ip netns add "$ctl" || return
  ip -n "$ctl" link set lo up || return
  ip -n "$ctl" link add br0 type bridge || return
  ip -n "$ctl" addr add "$subnet.1/24" dev br0 || return
  ip -n "$ctl" link set br0 up || return
  for ((i = 1; i <= nodes; i++)); do
    ip netns add "$(node_ns "$i")" || return
    ip -n "$ctl" link add "n$i" type veth peer name eth0 netns "$(node_ns "$i")" || return
    ip -n "$ctl" link set "n$i" master br0 || return
    ip -n "$ctl" link set "n$i" up || return
    ip -n "$(node_ns "$i")" link set lo up || return
    ip -n "$(node_ns "$i")" addr add "$subnet.$((10 + i))/24" dev eth0 || return
    ip -n "$(node_ns "$i")" link set eth0 up || return
  done
}

start() {
  local nodes=${1:-1} cpus=${2:-2} host mem ctl i nodes_conf="" names=()
  host=$(hostname -s)
  mkdir -p "$dir"/{munge,spool/ctld,log}
  chmod 0755 "$dir"   # munged runs as the munge user and must reach its folder
  echo "evoq$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')" > "$dir/tag"
  ctl=$(ctl_ns)

  # The network: a bridge in the ctl namespace, one veth pair per node.
  if ! make_network "$nodes" 2>"$dir/netns.err"; then
    echo "SKIPPED: the kernel refuses network namespaces or veth pairs here: $(tr '\n' ' ' < "$dir/netns.err")"
    exit 77
  fi
  for ((i = 1; i <= nodes; i++)); do
    names+=("$(node_name "$i")")
    nodes_conf+="NodeName=$(node_name "$i") NodeHostname=$(node_name "$i") NodeAddr=$subnet.$((10 + i)) CPUs=$cpus RealMemory=MEM State=UNKNOWN"$'\n'
  done

  # munge: own key, socket and pid file; munged refuses to run as root, hence the munge user. The
  # socket is a file: every namespace reaches it.
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chown -R munge:munge "$dir/munge" && chmod 0755 "$dir/munge" && chmod 0400 "$dir/munge/munge.key"
  runuser -u munge -- /usr/sbin/munged --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.sock" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed"
  for _ in $(seq 50); do munge -S "$dir/munge/munge.sock" -n | unmunge -S "$dir/munge/munge.sock" >/dev/null 2>&1 && break; sleep 0.1; done

  mem=$(awk -v n="$nodes" '/MemTotal/ {print int($2 / 1024 / 2 / n)}' /proc/meminfo)  # half the RAM in all
  cat > "$dir/slurm.conf" <<CONF
ClusterName=evoqci
SlurmctldHost=${host}(${subnet}.1)
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
KillWait=30
SlurmdParameters=config_overrides
# Finished jobs stay known (scontrol show job) for the whole test, however slow the machine.
MinJobAge=3600
MailProg=/bin/true
ReturnToService=2
StateSaveLocation=${dir}/spool/ctld
# Per node (%n): each slurmd has its own spool (PMIx sockets of its steps), pid file and log.
SlurmdSpoolDir=${dir}/spool/%n
# Per node too: the PMIx plugin makes TmpFS/spmix_appdir_<job>.<step> on every node of a step, which
# collides on a /tmp that the nodes share (on a real cluster each node has its own /tmp).
TmpFS=${dir}/tmp/%n
SlurmctldPidFile=${dir}/slurmctld.pid
SlurmdPidFile=${dir}/slurmd-%n.pid
SlurmctldLogFile=${dir}/log/slurmctld.log
SlurmdLogFile=${dir}/log/slurmd-%n.log
${nodes_conf//MEM/$mem}PartitionName=ci Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  in_ns "$ctl" /usr/sbin/slurmctld -c -f "$dir/slurm.conf"
  for ((i = 1; i <= nodes; i++)); do start_slurmd "$i"; done
  wait_idle "${names[@]}"
  echo "export SLURM_CONF=$dir/slurm.conf EVOQ_CTL_NS=$ctl"
}

# kill_wait PID...: SIGTERM, then SIGKILL after 5 s.
kill_wait() {
  local pid
  for pid in "$@"; do
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
}

# ns_pids NS: every process in network namespace NS.
ns_pids() { ip netns pids "$1" 2>/dev/null || true; }

stop() {
  local f ns
  [ -f "$dir/tag" ] || return 0
  for f in "$dir"/slurmd-*.pid "$dir/slurmctld.pid"; do
    [ -s "$f" ] && kill_wait "$(cat "$f")"
  done
  # Whatever is left in the namespaces (steps of killed slurmds) goes with them.
  for ns in $(ip netns list | awk '{print $1}' | grep "^$(cat "$dir/tag")-" || true); do
    # shellcheck disable=SC2046
    kill -9 $(ns_pids "$ns") 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  [ -s "$dir/munge/munged.pid" ] && kill_wait "$(cat "$dir/munge/munged.pid")"
  return 0
}

case "$cmd" in
  start) start "${3:-1}" "${4:-2}" ;;
  exec) shift 2; in_ns "$(ctl_ns)" "$@" ;;
  node-kill)
    pid=$(cat "$dir/slurmd-$(node_name "$3").pid")
    kill -9 "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    for p in $(ns_pids "$(node_ns "$3")"); do
      [ "$(cat "/proc/$p/comm" 2>/dev/null)" = slurmstepd ] || kill -9 "$p" 2>/dev/null || true
    done ;;
  node-start) start_slurmd "$3" ;;
  stop) stop ;;
  *) echo "usage: cluster.sh start|exec|node-kill|node-start|stop DIR ..." >&2; exit 2 ;;
esac
