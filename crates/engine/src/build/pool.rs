//! A small scoped thread pool for the build's per-host and per-file work.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Threads for work that mostly waits on the filesystem (creating, renaming, unlinking small
/// files): more than the cores, since each call waits on the disk rather than the CPU.
pub(super) fn io_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) * 4
}

/// `f` over every item on up to `threads` threads; results in the items' order. After the
/// first error the remaining items are skipped, and the error of the earliest item is returned.
pub(super) fn map<T: Sync, R: Send, E: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E> {
    let threads = threads.min(items.len()).max(1);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let slots: Vec<Mutex<Option<Result<R, E>>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= items.len() || failed.load(Ordering::Relaxed) {
                    return;
                }
                let r = f(&items[i]);
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
        }
    });
    let mut out = Vec::with_capacity(items.len());
    for slot in slots {
        match slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(Ok(r)) => out.push(r),
            Some(Err(e)) => return Err(e),
            // Items are taken in order, so every item before a skipped one ran, and one failed.
            None => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_items_order_and_the_earliest_error_wins() {
        let items: Vec<u32> = (0..100).collect();
        let doubled = map(&items, 7, |i| Ok::<_, u32>(i * 2)).unwrap();
        assert_eq!(doubled, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        let err = map(&items, 3, |&i| if i % 10 == 9 { Err(i) } else { Ok(i) }).unwrap_err();
        assert_eq!(err, 9);
        assert_eq!(
            map(&[] as &[u32], 4, |&i| Ok::<_, ()>(i)).unwrap(),
            Vec::<u32>::new()
        );
    }
}
