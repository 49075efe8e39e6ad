//! Bounded CPU work: at most N expensive computations (argon2 hashes, avatar decodes) run at
//! once, each on the blocking pool. A caller that cannot get a slot within [`SLOT_WAIT`] is
//! told so at once, so a flood of requests queues for two seconds at most and never makes the
//! server allocate more than N computations' worth of memory. tokio's blocking pool alone
//! would run up to 512 of them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// How long a caller waits for a free slot before giving up.
pub const SLOT_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    /// Every slot stayed taken for [`SLOT_WAIT`]; nothing was computed.
    #[error("every slot stayed busy for {} s", SLOT_WAIT.as_secs())]
    Busy,
    #[error("the computation failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A fixed number of slots for one kind of work; cheap to clone (clones share the slots).
#[derive(Debug, Clone)]
pub struct Slots {
    semaphore: Arc<Semaphore>,
    wait: Duration,
}

impl Slots {
    pub fn new(concurrency: usize) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(concurrency.max(1))),
            wait: SLOT_WAIT,
        }
    }

    /// Runs `work` on the blocking pool once a slot is free, holding the slot until it ends.
    pub async fn run<T, F>(&self, work: F) -> Result<T, SlotError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = tokio::time::timeout(self.wait, self.semaphore.clone().acquire_owned())
            .await
            .map_err(|_| SlotError::Busy)?
            .expect("the semaphore is never closed");
        Ok(tokio::task::spawn_blocking(move || {
            let _slot = permit;
            work()
        })
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_caller_without_a_slot_is_refused_after_the_wait_and_nothing_runs() {
        let slots = Slots {
            wait: Duration::from_millis(50),
            ..Slots::new(1)
        };
        let holder = slots.semaphore.clone().acquire_owned().await.unwrap();
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ran.clone();
        let refused = slots
            .run(move || flag.store(true, std::sync::atomic::Ordering::SeqCst))
            .await;
        assert!(matches!(refused, Err(SlotError::Busy)));
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
        drop(holder);
        assert_eq!(slots.run(|| 41 + 1).await.unwrap(), 42);
    }
}
