# shellcheck shell=bash
# Per-cluster environment of the evoq batch jobs: every slurm/*.sbatch sources this file first
# (`source "${EVOQ_ENV:-slurm/env.sh}"`, relative to the job's working directory, which is the project
# root when submitted from there or through slurm/submit_pipeline.sh). Copy it, edit the copy for your
# cluster and point EVOQ_ENV at it (sbatch passes the submitting shell's environment to the job):
#   EVOQ_ENV=$HOME/evoq-env-mycluster.sh slurm/submit_pipeline.sh ...
# Every value below is a default: a variable already set in the environment of the job wins.

# ---- software ----------------------------------------------------------------------------------
# Modules, if the cluster has them (names differ per site). evoq needs at run time: Open MPI with PMIx
# (srun --mpi=pmix), parallel HDF5, OpenCV, and for GPUs CUDA + NCCL matching the LibTorch it was built with.
# module purge
# module load gcc/12 openmpi/4.1 hdf5/1.10-openmpi opencv/4.6 cuda/12.4 nccl/2.21

# The evoq binary (built by scripts/build.sh) and the project root (configs in jobs/, these scripts).
: "${EVOQ_ROOT:=${SLURM_SUBMIT_DIR:-$PWD}}"
: "${EVOQ:=$EVOQ_ROOT/build/bin/evoq}"
# The Python venv of scripts/setup.sh (h5py/transformers for checks; evoq finds LibTorch by its rpath).
: "${EVOQ_VENV:=${EVOQ_CACHE:-$HOME/.cache/evoq}/venv}"

# ---- data ----------------------------------------------------------------------------------------
# Root of the IQA benchmark folders named in jobs/eval.cfg, and of the image manifests of the rounds.
: "${EVOQ_DATA:=/data/iqa}"
# Where submit_pipeline.sh puts a run when --run is not given.
: "${EVOQ_RUNS:=$EVOQ_ROOT/runs}"

# ---- devices and threads -------------------------------------------------------------------------
# cuda: one rank per GPU (each rank takes GPU local_rank); cpu: tests and GPU-less clusters.
: "${EVOQ_DEVICE:=cuda}"
# Intra-op threads per rank = the CPUs Slurm gave the task (never more: ranks share the node).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
# srun's MPI plugin: Debian/Ubuntu Open MPI only speaks PMIx (pmi2 fails with "OMPI was not built with
# SLURM's PMI support"); sites with a Slurm-aware Open MPI may use pmi2.
: "${EVOQ_SRUN_MPI:=pmix}"

# ---- NCCL (training's gradient all-reduce on GPUs) ------------------------------------------------
# A hung collective becomes an error instead of a job that burns its whole time limit.
export TORCH_NCCL_ASYNC_ERROR_HANDLING=${TORCH_NCCL_ASYNC_ERROR_HANDLING:-1}
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
# Site-specific; uncomment and set when NCCL picks the wrong network:
# export NCCL_SOCKET_IFNAME=ib0          # interface for bootstrap/TCP
# export NCCL_IB_HCA=mlx5                # InfiniBand adapters to use
# export NCCL_IB_DISABLE=1               # no InfiniBand (TCP only)

# ---- Open MPI --------------------------------------------------------------------------------------
# Containers and CI run as root; Open MPI refuses that without explicit consent.
if [ "$(id -u)" = 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export EVOQ_ROOT EVOQ EVOQ_VENV EVOQ_DATA EVOQ_RUNS EVOQ_DEVICE EVOQ_SRUN_MPI
