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
    loop {
        if let Err(e) = service.run_due_jobs().await {
            tracing::error!(error = ?e, "worker pass failed");
        }
        // Sleep until the next job is due (at most `poll`), or until a job is queued or we are told to stop.
        let wait = match service.next_job_due().await {
            Ok(Some(at)) => service.now().until(at).min(poll),
            _ => poll,
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = service.job_added() => {}
            () = tokio::time::sleep(wait.max(Duration::from_millis(10))) => {}
        }
    }
}
