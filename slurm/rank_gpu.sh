#!/usr/bin/env bash
# srun ... slurm/rank_gpu.sh CMD...: runs CMD with only this task's GPU visible (the SLURM_LOCALID-th
# of the GPUs Slurm gave the job on this node). For `evoq vote` and `evoq eval`, whose `--device cuda`
# means the first visible GPU: without this every rank of a node would share GPU 0. (`evoq train`
# picks cuda:<local rank> itself and is started without it.) A no-op without CUDA_VISIBLE_DEVICES or
# with a single visible GPU.
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ] && [ -n "${SLURM_LOCALID:-}" ]; then
  IFS=, read -ra gpus <<<"$CUDA_VISIBLE_DEVICES"
  if ((${#gpus[@]} > 1)); then
    export CUDA_VISIBLE_DEVICES=${gpus[SLURM_LOCALID % ${#gpus[@]}]}
  fi
fi
exec "$@"
