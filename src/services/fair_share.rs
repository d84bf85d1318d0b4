//! Background work shared fairly between tenants. Sending expiry alerts and renewing OAuth
//! tokens reach servers that a tenant's admins chose, and a hostile or careless admin can
//! choose one that never answers, or give their tenant far more work than any other. So
//! the work is taken in turns: each tenant has at most one task running, a few tenants run
//! at once, and a tenant whose task ends goes to the back of the line. A tenant whose tasks
//! hang then holds one place, not the whole job, and costs another tenant at most one
//! task's timeout.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::Hash;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;

/// Tasks running at once, across all tenants: enough that a few hanging tenants leave room
/// for the others, few enough that one instance never opens many connections at a time.
pub const CONCURRENCY: usize = 4;

/// How one run takes its turns.
#[derive(Debug, Clone, Copy)]
pub struct Turns {
    /// Tasks running at once, across tenants.
    pub concurrency: usize,
    /// No task starts after this; the work not started is left for the next run, so a run
    /// ends within this plus one task's timeout and never holds up the next one for long.
    pub start_until: Instant,
}

/// Runs `task` on every item of `work`, one item per tenant at a time and `turns.concurrency`
/// items at once. `work` comes in the order it should go: a tenant's place in line is its
/// first item's, and its items go in their order. Returns the outcomes in the order the
/// tasks ended.
pub async fn in_turns<K, T, R, F, Fut>(work: Vec<(K, T)>, turns: Turns, task: F) -> Vec<R>
where
    K: Eq + Hash,
    F: Fn(T) -> Fut,
    Fut: Future<Output = R>,
{
    // Each tenant's items, tenants in order of their first item.
    let mut lanes: Vec<VecDeque<T>> = Vec::new();
    let mut lane_of: HashMap<K, usize> = HashMap::new();
    for (tenant, item) in work {
        let next = lanes.len();
        let lane = *lane_of.entry(tenant).or_insert(next);
        if lane == next {
            lanes.push(VecDeque::new());
        }
        if let Some(queue) = lanes.get_mut(lane) {
            queue.push_back(item);
        }
    }
    // A lane is in `waiting` exactly when it has items and none of them runs.
    let mut waiting: VecDeque<usize> = (0..lanes.len()).collect();
    let mut running = FuturesUnordered::new();
    let mut outcomes = Vec::new();
    loop {
        while running.len() < turns.concurrency.max(1) && Instant::now() < turns.start_until {
            let Some(lane) = waiting.pop_front() else {
                break;
            };
            if let Some(item) = lanes.get_mut(lane).and_then(VecDeque::pop_front) {
                let started = task(item);
                running.push(async move { (lane, started.await) });
            }
        }
        let Some((lane, outcome)) = running.next().await else {
            break;
        };
        outcomes.push(outcome);
        if lanes.get(lane).is_some_and(|queue| !queue.is_empty()) {
            waiting.push_back(lane);
        }
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::Duration;

    use tokio::sync::{mpsc, oneshot};

    use super::*;

    fn turns(concurrency: usize) -> Turns {
        Turns {
            concurrency,
            start_until: Instant::now() + Duration::from_secs(60),
        }
    }

    /// Tenant A has three items and comes first; B and C have one each. With two places,
    /// B starts beside A at once, C takes the first place that frees, and A's next item
    /// waits behind C, never beside A's own.
    #[tokio::test]
    async fn each_tenant_runs_one_item_at_a_time_and_goes_to_the_back_of_the_line() {
        let work = vec![
            ("a", "a1"),
            ("a", "a2"),
            ("a", "a3"),
            ("b", "b1"),
            ("c", "c1"),
        ];
        let (started_tx, mut started) = mpsc::unbounded_channel();
        let gates: Mutex<HashMap<&str, oneshot::Receiver<()>>> = Mutex::default();
        let mut release = HashMap::new();
        for (_, item) in &work {
            let (tx, rx) = oneshot::channel();
            gates.lock().unwrap().insert(*item, rx);
            release.insert(*item, tx);
        }
        let run = in_turns(work, turns(2), |item| {
            let gate = gates.lock().unwrap().remove(item).unwrap();
            started_tx.send(item).unwrap();
            async move {
                gate.await.unwrap();
                item
            }
        });
        let drive = async {
            let mut next = || started.try_recv().ok();
            let mut seen = Vec::new();
            tokio::task::yield_now().await;
            // Each step: which items have started, then which one is let finish.
            for (expect_started, finish) in [
                (vec!["a1", "b1"], "a1"),
                (vec!["c1"], "b1"),
                (vec!["a2"], "c1"),
                (vec![], "a2"),
                (vec!["a3"], "a3"),
            ] {
                let mut now_started = Vec::new();
                while let Some(item) = next() {
                    now_started.push(item);
                }
                assert_eq!(now_started, expect_started, "after {seen:?}");
                release.remove(finish).unwrap().send(()).unwrap();
                seen.push(finish);
                for _ in 0..4 {
                    tokio::task::yield_now().await;
                }
            }
        };
        let (ended, ()) = tokio::join!(run, drive);
        assert_eq!(ended, ["a1", "b1", "c1", "a2", "a3"]);
    }

    #[tokio::test]
    async fn nothing_starts_once_the_run_is_over() {
        let over = Turns {
            concurrency: 4,
            start_until: Instant::now(),
        };
        let ran = in_turns(vec![("a", 1), ("b", 2)], over, |item| async move { item }).await;
        assert!(ran.is_empty());
    }
}
