//! # memwall-dist
//!
//! The model's [`Collective`] over MPI, so that a model split with
//! `--tp N` or `--pp N` ([`memwall_model::shard`]) runs as `N` processes
//! started by MPI's own launcher (`mpirun -np N memwall …`), on one host or
//! several. Following the design rule "scale out on an existing runtime, not
//! a home-made protocol": Open MPI carries the all-reduces, the pipeline's
//! activations and the step plans, over shared memory or TCP as it chooses.
//!
//! MPI is behind the `mpi` cargo feature (it links `libmpi` and needs
//! `libopenmpi-dev` to build). Without it, [`init`] returns
//! [`DistError::NotBuilt`] whenever more than one rank is asked for, saying
//! how to build with it; a single rank never needs MPI.

use memwall_model::Collective;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum DistError {
    #[error(
        "--tp/--pp above 1 need MPI, and this memwall was built without it: install Open MPI \
         (apt-get install libopenmpi-dev openmpi-bin), build with `cargo build --release -p memwall-cli \
         --features mpi`, and launch with `mpirun -np N memwall …`"
    )]
    NotBuilt,
    #[error("MPI could not be initialised (was it initialised twice?)")]
    Init,
    #[error("MPI provides thread level {0}, but memwall calls MPI from its engine thread: it needs at least MPI_THREAD_SERIALIZED")]
    Threading(String),
}

/// The communicator of this process: `None` when MPI is not needed (one
/// rank wanted and not launched by `mpirun`).
pub fn init(ranks_wanted: usize) -> Result<Option<Arc<dyn Collective>>, DistError> {
    if ranks_wanted <= 1 && !(cfg!(feature = "mpi") && launched_by_mpirun()) {
        return Ok(None);
    }
    imp::init()
}

/// Whether Open MPI's (or another MPI's) launcher started this process.
pub fn launched_by_mpirun() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"].iter().any(|k| std::env::var_os(k).is_some())
}

/// Processes of this job on this host (Open MPI's `OMPI_COMM_WORLD_LOCAL_SIZE`),
/// for sharing the cores among them; 1 if unknown.
pub fn local_ranks() -> usize {
    std::env::var("OMPI_COMM_WORLD_LOCAL_SIZE").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1)
}

#[cfg(not(feature = "mpi"))]
mod imp {
    use super::*;

    pub fn init() -> Result<Option<Arc<dyn Collective>>, DistError> {
        Err(DistError::NotBuilt)
    }
}

#[cfg(feature = "mpi")]
mod imp {
    use super::*;
    use mpi::topology::{Color, SimpleCommunicator};
    use mpi::traits::*;
    use mpi::Threading;
    use std::sync::Mutex;

    /// A communicator (`MPI_COMM_WORLD`, or a group split from it); MPI is
    /// finalised when the last handle drops.
    struct Mpi {
        rank: usize,
        size: usize,
        comm: SimpleCommunicator,
        /// Serialises this process's MPI calls on every communicator
        /// (`MPI_THREAD_SERIALIZED` is all we ask for); holds the
        /// all-reduce's buffer of every rank's part.
        lock: Arc<Mutex<Vec<f32>>>,
        /// Dropped after `comm` (fields drop in order): finalises MPI last.
        _universe: Arc<mpi::environment::Universe>,
    }

    // SAFETY: every use of a communicator goes through `lock`, and MPI was
    // initialised with at least MPI_THREAD_SERIALIZED, which allows calls
    // from any thread one at a time.
    unsafe impl Send for Mpi {}
    unsafe impl Sync for Mpi {}

    pub fn init() -> Result<Option<Arc<dyn Collective>>, DistError> {
        let (universe, level) = mpi::initialize_with_threading(Threading::Serialized).ok_or(DistError::Init)?;
        if level < Threading::Serialized {
            return Err(DistError::Threading(format!("{level:?}")));
        }
        let comm = universe.world();
        let (rank, size) = (comm.rank() as usize, comm.size() as usize);
        let lock = Arc::new(Mutex::new(Vec::new()));
        Ok(Some(Arc::new(Mpi { rank, size, comm, lock, _universe: Arc::new(universe) })))
    }

    impl Collective for Mpi {
        fn rank(&self) -> usize {
            self.rank
        }

        fn size(&self) -> usize {
            self.size
        }

        /// Every rank's `x` gathered, then added in rank order
        /// (`(x₀ + x₁) + x₂ …`, as [`ThreadGroup`](memwall_model::collective::ThreadGroup)
        /// does) on every rank. Not `MPI_Allreduce`: Open MPI picks its
        /// algorithm, and so the order of the additions, by message size, so
        /// with 3 or more ranks the same rows summed in a step of another
        /// token count came out with other bits (a prefix-cache hit then
        /// changed greedy SmolLM2 text under `--tp 3`).
        fn all_reduce_sum(&self, x: &mut [f32]) {
            if x.is_empty() {
                return;
            }
            let mut gathered = self.lock.lock().expect("unpoisoned");
            gathered.resize(x.len() * self.size, 0.0);
            self.comm.all_gather_into(&x[..], &mut gathered[..]);
            x.copy_from_slice(&gathered[..x.len()]);
            for part in gathered.chunks_exact(x.len()).skip(1) {
                x.iter_mut().zip(part).for_each(|(a, b)| *a += b);
            }
        }

        fn send(&self, to: usize, x: &[f32]) {
            let _serial = self.lock.lock().expect("unpoisoned");
            self.comm.process_at_rank(to as i32).send(x);
        }

        fn recv(&self, from: usize, x: &mut [f32]) {
            let _serial = self.lock.lock().expect("unpoisoned");
            let status = self.comm.process_at_rank(from as i32).receive_into(x);
            let n = status.count(f32::equivalent_datatype()) as usize;
            assert_eq!(n, x.len(), "rank {from} sent {n} values, rank {} expected {}", self.rank, x.len());
        }

        fn broadcast_bytes(&self, root: usize, buf: &mut Vec<u8>) {
            let _serial = self.lock.lock().expect("unpoisoned");
            let root = self.comm.process_at_rank(root as i32);
            let mut len = buf.len() as u64;
            root.broadcast_into(&mut len);
            buf.resize(len as usize, 0);
            root.broadcast_into(&mut buf[..]);
        }

        /// `MPI_Comm_split` by `color`, ranked by this communicator's rank.
        fn split(&self, color: usize) -> Arc<dyn Collective> {
            let _serial = self.lock.lock().expect("unpoisoned");
            let color = Color::with_value(i32::try_from(color).expect("a colour fits an MPI int"));
            let comm = self.comm.split_by_color(color).expect("a defined colour gives a communicator");
            let (rank, size) = (comm.rank() as usize, comm.size() as usize);
            Arc::new(Mpi { rank, size, comm, lock: self.lock.clone(), _universe: self._universe.clone() })
        }
    }
}
