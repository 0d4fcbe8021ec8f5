//! What every channel must do whatever the receiver answers, checked around a real send:
//! one result per job, in order, batches within the channel's own limit.

use notification_worker::delivery::{Channel, Job, SendError};

/// Sends `jobs` through `channel` and checks the contract on the way; the results, for the
/// test's own assertions.
pub async fn send_checked<C: Channel>(channel: &C, jobs: &[Job]) -> Vec<Result<(), SendError>> {
    assert!(channel.max_batch() >= 1, "{} takes no job at all", channel.name());
    assert!(
        jobs.len() <= channel.max_batch(),
        "the test sends {} jobs, over {}'s batch of {}",
        jobs.len(),
        channel.name(),
        channel.max_batch()
    );
    let results = channel.send(jobs).await;
    assert_eq!(
        results.len(),
        jobs.len(),
        "{} must say what became of each job: {results:?}",
        channel.name()
    );
    results
}

/// A sample `updated` job for `owner`.
pub fn updated(owner: &str) -> Job {
    let Job::Created(notice) = Job::sample(owner) else {
        unreachable!("a sample is a created job")
    };
    Job::Updated(notification_worker::delivery::job::Notice {
        version: "42".into(),
        ..notice
    })
}
