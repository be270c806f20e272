//! Worker pools for the parallel entry points (`encode_batch`, training, corpus encoding):
//! thread counts are capped, and a process that was forked gets pools of its own.
//!
//! Why not rayon's global pool: `fork()` copies only the calling thread, so in a forked child
//! (a `multiprocessing` or DataLoader worker started with the fork method) the global pool's
//! registry still says it has N workers that no longer exist, and the first parallel call waits
//! for them forever. Rayon cannot re-create its global pool, so every parallel entry point runs
//! inside [`install`], which keeps one pool per process id and builds a fresh one when the pid
//! it was made in is not the current one.
//!
//! Why a cap: a thread count is a request for parallelism, not for that many OS threads. Taken
//! literally, `num_threads=10**9` tried to spawn a billion threads (117 s, 1 GB before failing)
//! and `tct-encode --threads 100000` ran the machine out of pids. More threads than
//! [`MAX_THREADS_PER_CORE`] per available core never helps this CPU-bound work, so requests are
//! clamped to [`max_threads`]; results never depend on the thread count.

use std::sync::{Arc, Mutex};

/// Threads per available core that a request may ask for (see [`max_threads`]).
pub const MAX_THREADS_PER_CORE: usize = 4;

/// Cores this process may run on (`sched_getaffinity` on Linux), at least 1.
pub fn available_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The most threads any entry point starts: [`MAX_THREADS_PER_CORE`] x the available cores.
pub fn max_threads() -> usize {
    available_cores().saturating_mul(MAX_THREADS_PER_CORE)
}

/// The thread count actually used for a request of `requested` (`None`: every core).
/// Never 0, never above [`max_threads`].
pub fn effective_threads(requested: Option<usize>) -> usize {
    match requested {
        None => available_cores(),
        Some(n) => n.clamp(1, max_threads()),
    }
}

/// One cached pool: the process that built it and its size.
struct Cached {
    pid: u32,
    threads: usize,
    pool: Arc<rayon::ThreadPool>,
}

/// The pool of the most recent request, reused while pid and size stay the same.
// Building a pool costs about a millisecond of thread starts; `encode_batch` on a few
// documents is faster than that.
static POOL: Mutex<Option<Cached>> = Mutex::new(None);

/// A pool of `threads` workers that belongs to this process.
fn pool_for(threads: usize) -> Result<Arc<rayon::ThreadPool>, rayon::ThreadPoolBuildError> {
    let pid = std::process::id();
    // A poisoned lock only means another caller panicked while holding it; the cache is a
    // plain value and still consistent.
    let mut slot = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = slot.as_ref() {
        if c.pid == pid && c.threads == threads {
            return Ok(Arc::clone(&c.pool));
        }
    }
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("tct-worker-{i}"))
            .build()?,
    );
    let old = slot.replace(Cached {
        pid,
        threads,
        pool: Arc::clone(&pool),
    });
    if let Some(old) = old {
        if old.pid != pid {
            // Built by the parent before a fork: its workers do not exist here, and dropping
            // it would signal them and wait on their registry. Leak it (one per fork).
            std::mem::forget(old);
        }
    }
    Ok(pool)
}

/// Run `op` on a pool of `effective_threads(requested)` workers that belongs to this process
/// (rayon's `par_iter` inside `op` uses it). With one thread, or if no thread can be started,
/// `op` runs on the calling thread: the results are the same either way.
pub fn install<R: Send>(requested: Option<usize>, op: impl FnOnce() -> R + Send) -> R {
    let threads = effective_threads(requested);
    if threads == 1 {
        return run_serial(op);
    }
    match pool_for(threads) {
        Ok(pool) => pool.install(op),
        Err(_) => run_serial(op),
    }
}

/// `op` on a one-thread pool of its own: `par_iter` inside must not reach rayon's global pool,
/// which a forked child cannot use. Building it costs one thread start; if even that fails,
/// `op` runs right here (it can then only hang in a forked child, where no thread could start
/// anyway).
fn run_serial<R: Send>(op: impl FnOnce() -> R + Send) -> R {
    match pool_for(1) {
        Ok(pool) => pool.install(op),
        Err(_) => op(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn thread_counts_are_capped() {
        assert_eq!(effective_threads(Some(0)), 1);
        assert_eq!(effective_threads(Some(1)), 1);
        assert_eq!(effective_threads(Some(usize::MAX)), max_threads());
        assert_eq!(effective_threads(Some(1_000_000_000)), max_threads());
        assert_eq!(effective_threads(None), available_cores());
        assert!(max_threads() >= MAX_THREADS_PER_CORE);
    }

    #[test]
    fn install_runs_on_a_pool_of_the_capped_size() {
        let n = install(Some(1_000_000_000), rayon::current_num_threads);
        assert_eq!(n, max_threads());
        let sum: u64 = install(Some(3), || (0..1000u64).into_par_iter().sum());
        assert_eq!(sum, 499_500);
        // One thread still runs inside a pool of ours, not rayon's global one.
        assert_eq!(install(Some(1), rayon::current_num_threads), 1);
        assert!(install(Some(1), || rayon::current_thread_index().is_some()));
    }
}
