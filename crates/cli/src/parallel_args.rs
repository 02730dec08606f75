//! `--tp N` / `--pp N`: running one model as N processes under `mpirun`.

use anyhow::{bail, Result};
use memwall_model::{Collective, SingleProcess, Split};
use std::sync::Arc;

#[derive(clap::Args, Clone, Debug)]
pub struct ParallelArgs {
    /// Tensor parallelism: split every layer's heads and MLP over N
    /// processes started with `mpirun -np N` (each holds 1/N of the layer
    /// weights and the KV cache of its heads). Needs a build with
    /// `--features mpi`. With --pp P: N ranks in each of P stages,
    /// `mpirun -np N·P`.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub tp: u64,
    /// Pipeline parallelism: split the layers into N contiguous stages, one
    /// per process started with `mpirun -np N` (a step of 8 tokens or more
    /// runs as micro-batches that keep the stages busy together). Needs
    /// `--features mpi`.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub pp: u64,
}

/// This process's part of a split model.
#[derive(Clone)]
pub struct Parallel {
    pub split: Split,
    pub comm: Arc<dyn Collective>,
}

impl Parallel {
    pub fn whole() -> Parallel {
        Parallel { split: Split::WHOLE, comm: Arc::new(SingleProcess) }
    }

    pub fn rank(&self) -> usize {
        self.split.rank()
    }

    /// Compute threads for this rank: `threads` if given, else this host's
    /// cores shared among the ranks on it.
    pub fn threads(&self, threads: Option<usize>) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let local = if self.split.size() > 1 { memwall_dist::local_ranks() } else { 1 };
        threads.unwrap_or((cores / local).max(1)).max(1)
    }
}

impl ParallelArgs {
    /// Joins the MPI job if more than one rank is asked for (or `mpirun`
    /// started this process) and says which part of the model this rank runs.
    pub fn init(&self) -> Result<Parallel> {
        let (tp, pp) = (self.tp as usize, self.pp as usize);
        let Some(comm) = memwall_dist::init(tp * pp)? else { return Ok(Parallel::whole()) };
        let split = Split::new(tp, pp, comm.rank(), comm.size())?;
        if split == Split::WHOLE && comm.size() > 1 {
            bail!(
                "{} processes were started but neither --tp nor --pp was given: add --tp {0} or --pp {0}",
                comm.size()
            );
        }
        Ok(Parallel { split, comm })
    }
}
