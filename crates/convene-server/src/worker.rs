//! The background worker: runs queued group creations when they are due, wakes when jobs are queued, and puts back
//! jobs whose process is gone — on start every running job, then on each pass those left idle (they are reconciled
//! before anything is retried).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::service::Service;

pub async fn run(service: Service, poll: Duration, shutdown: CancellationToken) {
    match service.requeue_orphaned_jobs(service.now()).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(jobs = n, "jobs interrupted by a stop go back to the queue for reconciliation"),
        Err(e) => tracing::error!(error = ?e, "could not recover interrupted jobs"),
    }
    let shares_the_database = service.instances().node().is_some();
    loop {
        let ran = match service.run_due_jobs().await {
            Ok(ran) => ran,
            Err(e) => {
                tracing::error!(error = ?e, "worker pass failed");
                0
            }
        };
        // Sleep until the next job is due (at most `poll`), or until a job is queued or we are told to stop. Jobs
        // due that a pass left to the other nodes (their instances run there) are due still: look again in `poll`.
        let wait = match service.next_job_due().await {
            Ok(Some(at)) => service.now().until(at).min(poll),
            _ => poll,
        };
        let wait = if shares_the_database && ran == 0 && wait.is_zero() { poll } else { wait };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = service.job_added() => {}
            () = tokio::time::sleep(wait.max(Duration::from_millis(10))) => {}
        }
    }
}
