//! The clock abstraction and the operator's options of [`crate::ensure`].

use std::time::SystemTime;

/// Options of [`crate::ensure`] that are decisions of the operator, not of the cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PkiOptions {
    /// Allow creating a new CA or service-account key when the stored one is missing,
    /// unreadable, mismatched or expired although certificates were issued; every
    /// certificate the old one signed is then re-issued. A healthy CA is never replaced.
    pub rotate_ca: bool,
}

/// Source of "now"; the CLI passes [`SystemClock`], tests a [`FixedClock`].
pub trait Clock {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock stopped at a given time.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub SystemTime);

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        self.0
    }
}
