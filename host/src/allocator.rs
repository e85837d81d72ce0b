//! Handing memory the process no longer uses back to the system.
//!
//! glibc's allocator keeps what a burst freed (one arena per thread that
//! allocated), so after a backlog of large batches the resident size stays
//! at the burst's peak while the server only answers queries. The consumers
//! call [`release_free_memory`] when they have caught up (the embedded log
//! reader, and the Kafka reader once no message came for a while).

/// Return free heap pages to the system (glibc's `malloc_trim`); a no-op
/// with other allocators. The crate's one `unsafe` block: a foreign call
/// with no arguments to uphold.
#[allow(unsafe_code)]
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists, under its
    // locks; it takes no pointers from us.
    unsafe {
        libc::malloc_trim(0);
    }
}
