//! kiln-fsio: durable output files, written through one atomic writer (a temp file with an
//! exact mode, committed by fsync, rename and folder fsync), and the one deterministic tar
//! format kiln writes; and where an external program is.
#![cfg_attr(not(test), deny(unused_crate_dependencies))]
#![warn(missing_docs)]

mod atomic;
mod exe;
pub mod pool;
mod staging;
pub mod tarw;

pub use atomic::{rename_into, write_atomic, Error, TempFile};
pub use exe::{find_executable, SYSTEM_DIRS};
pub use staging::Staging;
