//! Coverage feedback on stable Rust, when built with `-C instrument-coverage --cfg
//! kiln_fuzz_coverage` (as `scripts/fuzz` does).
//!
//! `-C instrument-coverage` gives every code region a 64-bit counter in the ELF section
//! `__llvm_prf_cnts`, whose bounds the linker exposes as `__start_`/`__stop_` symbols. The
//! harness zeroes the counters before each input and reads them after it: an input that
//! reaches a region, or a region a number of times in a new power-of-two bucket, joins the
//! corpus. Without the cfg every method is a no-op and the harness mutates the seeds only.

/// What the corpus has reached so far.
#[derive(Debug, Default)]
pub struct Coverage {
    /// Per counter: the hit-count buckets seen (bit `k`: a count in `2^k..2^(k+1)`).
    #[cfg_attr(not(kiln_fuzz_coverage), allow(dead_code))]
    seen: Vec<u8>,
    /// Distinct (counter, bucket) pairs seen.
    features: usize,
}

#[cfg(kiln_fuzz_coverage)]
mod counters {
    extern "C" {
        static __start___llvm_prf_cnts: u64;
        static __stop___llvm_prf_cnts: u64;
        fn __llvm_profile_set_filename(name: *const std::ffi::c_char);
    }

    /// The counters as a raw slice: instrumented code writes them behind Rust's back.
    pub(super) fn region() -> (*mut u64, usize) {
        // SAFETY: the linker defines both symbols around the section; we only take addresses.
        unsafe {
            let start = std::ptr::addr_of!(__start___llvm_prf_cnts) as *mut u64;
            let stop = std::ptr::addr_of!(__stop___llvm_prf_cnts) as *mut u64;
            (start, stop.offset_from(start) as usize)
        }
    }

    /// Sends the profile the runtime writes at exit to /dev/null (no .profraw files).
    pub(super) fn no_profile_file() {
        // SAFETY: a NUL-terminated static string; the runtime copies the pattern.
        unsafe { __llvm_profile_set_filename(c"/dev/null".as_ptr()) }
    }
}

/// Stops the profiling runtime of an instrumented build from writing a `.profraw` file at
/// exit (in the working folder); a no-op otherwise.
pub fn no_profile_file() {
    #[cfg(kiln_fuzz_coverage)]
    counters::no_profile_file();
}

impl Coverage {
    /// Whether this build collects coverage.
    pub const ENABLED: bool = cfg!(kiln_fuzz_coverage);

    /// A fresh map.
    pub fn new() -> Self {
        #[cfg(kiln_fuzz_coverage)]
        {
            let (_, len) = counters::region();
            Coverage {
                seen: vec![0; len],
                features: 0,
            }
        }
        #[cfg(not(kiln_fuzz_coverage))]
        Coverage::default()
    }

    /// Zeroes the counters before an input runs.
    pub fn reset(&self) {
        #[cfg(kiln_fuzz_coverage)]
        {
            let (start, len) = counters::region();
            // SAFETY: the section is writable and `len` counters long.
            unsafe { std::ptr::write_bytes(start, 0, len) };
        }
    }

    /// Records what the last input reached; true when it reached something new.
    pub fn novel(&mut self) -> bool {
        #[cfg(kiln_fuzz_coverage)]
        {
            let (start, len) = counters::region();
            self.seen.resize(len, 0);
            // SAFETY: the section holds `len` aligned counters. Instrumented code on other
            // threads (the watchdog) bumps them without synchronisation, as it always does;
            // a value read mid-update only moves one count between buckets.
            let counts = unsafe { std::slice::from_raw_parts(start.cast_const(), len) };
            let mut new = false;
            // Most counters stay zero: skip blocks of them with one vectorised test.
            for (b, block) in counts.chunks(16).enumerate() {
                if block.iter().fold(0, |acc, &c| acc | c) == 0 {
                    continue;
                }
                for (j, &count) in block.iter().enumerate() {
                    if count == 0 {
                        continue;
                    }
                    let i = b * 16 + j;
                    let bucket = 1u8 << (63 - count.leading_zeros()).min(7);
                    if self.seen[i] & bucket == 0 {
                        self.seen[i] |= bucket;
                        self.features += 1;
                        new = true;
                    }
                }
            }
            new
        }
        #[cfg(not(kiln_fuzz_coverage))]
        false
    }

    /// Distinct (region, hit-count bucket) pairs reached so far.
    pub fn features(&self) -> usize {
        self.features
    }
}
