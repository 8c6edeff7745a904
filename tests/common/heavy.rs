//! One heavy test at a time: tests that put load on the machine or drive an outside peer
//! whose timing they assert (sipp floods and load runs, baresip, sipvicious, a database
//! taken offline) hold this lock while they run, so that two of them never share the
//! cores, whether they are in one test binary or in several run side by side.

use std::fs::{File, OpenOptions};

/// Held for the length of a heavy test; dropping it closes the file, which releases the lock.
pub struct HeavyTest {
    _file: File,
}

/// Waits until no other heavy test runs, then holds the lock (a `flock` on one file in the
/// temporary directory, shared by every test process of the machine).
pub fn one_at_a_time() -> HeavyTest {
    let path = std::env::temp_dir().join("vca-sip-heavy-tests.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    file.lock()
        .unwrap_or_else(|e| panic!("lock {}: {e}", path.display()));
    HeavyTest { _file: file }
}
