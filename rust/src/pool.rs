//! Running a rayon job on a chosen number of threads.

/// Run `f` on a pool of `n` threads for `Some(n)` with `n > 0`; otherwise, or when such a pool
/// cannot be started, on rayon's global pool (results are the same either way, only the
/// parallelism differs).
pub(crate) fn run_on<R: Send>(num_threads: Option<usize>, f: impl FnOnce() -> R + Send) -> R {
    match num_threads {
        Some(n) if n > 0 => match rayon::ThreadPoolBuilder::new().num_threads(n).build() {
            Ok(pool) => pool.install(f),
            Err(_) => f(),
        },
        _ => f(),
    }
}
