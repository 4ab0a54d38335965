//! Transforms spread over the cores the process may run on: a governed fetch
//! response's partitions are independent, so a large one is transformed on
//! several threads and its results taken in order.

use std::sync::OnceLock;

/// Responses with fewer bytes to transform than this are transformed on the
/// connection's own thread (a thread costs tens of microseconds to start).
pub(crate) const PARALLEL_FROM_BYTES: usize = 512 << 10;

/// Scratch buffers a transform reuses from one item to the next.
pub(crate) type Scratch = (Vec<u8>, Vec<u8>);

/// The cores this process may run on (its CPU affinity: `taskset` limits
/// it), read once.
pub(crate) fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The partitions of a fetched topic that carry records: (index in
/// `partitions`, partition, records), the work [`map`] shares out.
pub(crate) fn with_records(
    partitions: &[kafka_protocol::messages::fetch_response::PartitionData],
) -> Vec<(usize, i32, bytes::Bytes)> {
    partitions
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let r = p.records.clone()?;
            (!r.is_empty()).then_some((i, p.partition_index, r))
        })
        .collect()
}

/// `f` over `items`, results in `items`' order. When there are two or more
/// items of [`PARALLEL_FROM_BYTES`] or more together (by `size`) and more
/// than one core, the items are shared out by size over up to [`cores`]
/// threads, this one included, each with its own scratch buffers.
pub(crate) fn map<T: Sync, R: Send>(
    items: &[T],
    size: impl Fn(&T) -> usize,
    f: impl Fn(&T, &mut Scratch) -> R + Sync,
) -> Vec<R> {
    let threads = cores().min(items.len());
    let total: usize = items.iter().map(&size).sum();
    if threads < 2 || total < PARALLEL_FROM_BYTES {
        let mut scratch = Scratch::default();
        return items.iter().map(|it| f(it, &mut scratch)).collect();
    }
    // Largest first, each to the share with the fewest bytes so far.
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(size(&items[i])));
    let mut shares: Vec<(usize, Vec<usize>)> = vec![(0, Vec::new()); threads];
    for i in order {
        if let Some(share) = shares.iter_mut().min_by_key(|s| s.0) {
            share.0 += size(&items[i]);
            share.1.push(i);
        }
    }
    let f = &f;
    let mut results: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let mut shares = shares.into_iter().map(|(_, share)| share);
        let here = shares.next().unwrap_or_default();
        let spawned: Vec<_> = shares
            .map(|share| {
                scope.spawn(move || {
                    let mut scratch = Scratch::default();
                    share
                        .into_iter()
                        .map(|i| (i, f(&items[i], &mut scratch)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut scratch = Scratch::default();
        for i in here {
            results[i] = Some(f(&items[i], &mut scratch));
        }
        for handle in spawned {
            match handle.join() {
                Ok(done) => {
                    for (i, r) in done {
                        results[i] = Some(r);
                    }
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    // Every index was given to exactly one share.
    results.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_in_order_whether_spread_or_not() {
        let small: Vec<usize> = (0..10).collect();
        assert_eq!(
            map(&small, |_| 1, |x, _| x * 2),
            (0..10).map(|x| x * 2).collect::<Vec<_>>()
        );
        // Large enough to spread (when the machine has two cores or more).
        let large: Vec<usize> = (0..37).collect();
        let threads = std::sync::Mutex::new(std::collections::HashSet::new());
        let out = map(
            &large,
            |x| (x + 1) * PARALLEL_FROM_BYTES / 10,
            |x, (buf, _)| {
                buf.push(1);
                threads
                    .lock()
                    .map(|mut t| t.insert(std::thread::current().id()))
                    .ok();
                x + 1
            },
        );
        assert_eq!(out, (1..38).collect::<Vec<_>>());
        let used = threads.lock().map(|t| t.len()).unwrap_or(0);
        assert_eq!(used, cores().min(large.len()), "threads used");
    }
}
