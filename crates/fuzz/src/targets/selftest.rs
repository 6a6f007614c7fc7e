//! A target that fails on purpose, so the harness's own tests can see each kind of finding.

use std::hint::black_box;

use super::Ctx;

/// `PANIC…` panics, `HANG…` never returns, `ALLOC…` asks for 1 GiB; anything else passes.
pub(super) fn run(_ctx: &Ctx, data: &[u8]) {
    if data.starts_with(b"PANIC") {
        panic!("selftest: asked to panic");
    }
    if data.starts_with(b"HANG") {
        loop {
            std::thread::sleep(std::time::Duration::from_millis(10));
            black_box(data);
        }
    }
    if data.starts_with(b"ALLOC") {
        let v: Vec<u8> = Vec::with_capacity(black_box(1 << 30));
        black_box(&v);
    }
}
