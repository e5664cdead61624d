//! The C allocator's settings for how a server allocates: [`tune`].
//!
//! A COPY moves its rows through buffers of one to tens of MiB (Arrow IPC bodies, a Raft
//! entry's frames, the copies between them). glibc's malloc serves an allocation above its
//! mmap threshold — 128 KiB at first, raised only as such blocks are freed — with a fresh
//! `mmap` and gives it back with `munmap`, so every such buffer is faulted in again, a page at
//! a time: page faults were 27% of a 3 x 1M-row COPY's samples (`perf record`, 2026-12-04).
//! With the threshold at its maximum (32 MiB) and the trim threshold at 1 GiB, freed buffers
//! stay in the heap for the next batch; the same COPY ran at 2.35-2.81M rows/s against
//! 2.01-2.70M (seven alternated runs each, docs/design/2026-12-02-replication.md, eleventh
//! session). The cost: up to 1 GiB of freed memory may stay with the process instead of
//! going back to the system.
//!
//! The only `unsafe` in Eddy: `mallopt` is a plain C call, and nothing else is.

#![allow(unsafe_code)]

/// The mmap threshold: glibc's largest (`DEFAULT_MMAP_THRESHOLD_MAX` on 64-bit).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 32 << 20;
/// How much free memory the heap may keep at its top before it is given back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: i32 = 1 << 30;

/// Sets glibc malloc's thresholds (see the module doc); elsewhere it does nothing. Call it
/// before the runtime starts.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` takes two integers and only changes the allocator's parameters; glibc
    // documents it as MT-Safe, and both values are within the ranges it accepts (it returns 0
    // and changes nothing otherwise, which is only a lost optimisation).
    unsafe {
        if libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 0
            || libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 0
        {
            tracing::warn!("the C allocator refused its thresholds; running on its defaults");
        }
    }
}
