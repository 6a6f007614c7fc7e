//! kiln-fsio: durable output files, written through one atomic writer (a temp file with an
//! exact mode, committed by fsync, rename and folder fsync).
#![warn(missing_docs)]

mod atomic;

pub use atomic::{rename_into, write_atomic, Error, TempFile};
