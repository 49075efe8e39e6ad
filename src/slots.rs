//! Bounded CPU work: at most N expensive computations (argon2 hashes, avatar decodes) run at
//! once, on N worker threads of their own. A caller that cannot get a slot within
//! [`SLOT_WAIT`] is told so at once, so a flood of requests queues for two seconds at most and
//! never makes the server allocate more than N computations' worth of memory. tokio's blocking
//! pool alone would run up to 512 of them; and even bounded, it runs them on whichever of its
//! threads is free, and glibc keeps a freed 19 MiB argon2 block in each thread's arena: a
//! flood measured 294 MiB that way. N fixed threads keep N arenas.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

/// How long a caller waits for a free slot before giving up.
pub const SLOT_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    /// Every slot stayed taken for [`SLOT_WAIT`]; nothing was computed.
    #[error("every slot stayed busy for {} s", SLOT_WAIT.as_secs())]
    Busy,
    /// The computation panicked.
    #[error("the computation failed")]
    Failed,
}

type Job = Box<dyn FnOnce() + Send>;

/// A fixed number of slots for one kind of work; cheap to clone (clones share the slots).
#[derive(Debug, Clone)]
pub struct Slots {
    semaphore: Arc<Semaphore>,
    wait: Duration,
    jobs: SyncSender<Job>,
}

impl Slots {
    /// `concurrency` slots, and as many worker threads; they end when the last clone is dropped.
    pub fn new(concurrency: usize) -> Self {
        let concurrency = concurrency.max(1);
        // Never full: a job is sent only with a permit, and there are as many permits.
        let (jobs, queue) = sync_channel::<Job>(concurrency);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..concurrency {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name("stowage-slot".into())
                .spawn(move || work_off(&queue))
                .expect("starting a worker thread");
        }
        Self {
            semaphore: Arc::new(Semaphore::new(concurrency)),
            wait: SLOT_WAIT,
            jobs,
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
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _slot = permit;
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            if let Ok(value) = outcome {
                let _ = done.send(value);
            }
        });
        self.jobs.send(job).map_err(|_| SlotError::Failed)?;
        result.await.map_err(|_| SlotError::Failed)
    }
}

/// A worker: runs jobs until every sender is gone.
fn work_off(queue: &Mutex<Receiver<Job>>) {
    loop {
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
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
        assert!(matches!(
            slots.run(|| panic!("a failing computation")).await,
            Err(SlotError::Failed)
        ));
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
