//! A small scoped thread pool for the build's per-host and per-file work.

/// Threads for work that mostly waits on the filesystem (creating, renaming, unlinking small
/// files): more than the cores, since each call waits on the disk rather than the CPU.
pub(super) fn io_threads() -> usize {
    kiln_fsio::pool::cores() * 4
}

/// `f` over every item on up to `threads` threads (the one pool, `kiln_fsio::pool`); results
/// in the items' order. After the first error the remaining items are skipped, and the error
/// of the earliest item is returned.
pub(super) fn map<T: Sync, R: Send, E: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E> {
    let mut out = Vec::with_capacity(items.len());
    for slot in kiln_fsio::pool::run(items, threads, f) {
        match slot {
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
