//! A socket's task: the handler futures of one socket, started in arrival order.

use super::*;

/// One piece of work for a socket's task.
pub(super) enum Job {
    /// An event handler: it starts after everything queued before it has started, then runs
    /// beside the others.
    Handler(BoxFuture<()>),
    /// A system handler (`connection`, `disconnecting`, `disconnect`): it starts likewise,
    /// and nothing queued after it starts before it has completed, so a `connection` handler
    /// that awaits its set-up still runs before the socket's first event.
    Barrier(BoxFuture<()>),
}

impl Entry {
    /// Hands `job` to the socket's task, starting it with `spawn` if it is not running yet.
    pub(super) fn push(&mut self, job: Job, spawn: &Spawner) {
        if self.closed {
            return;
        }
        let (queue, jobs) = self.task.get_or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded();
            let jobs = Arc::new(AtomicUsize::new(0));
            spawn(Box::pin(tracing::Instrument::instrument(
                socket_task(rx, jobs.clone()),
                self.span.clone(),
            )));
            (tx, jobs)
        });
        jobs.fetch_add(1, Ordering::AcqRel);
        if queue.unbounded_send(job).is_err() {
            jobs.fetch_sub(1, Ordering::AcqRel);
            self.closed = true;
        }
    }

    /// Jobs handed to the socket's task that have not completed yet.
    pub(super) fn unfinished(&self) -> usize {
        self.task
            .as_ref()
            .map_or(0, |(_, jobs)| jobs.load(Ordering::Acquire))
    }

    /// Whether the socket's handlers no longer run (its task ended after a panic).
    pub(super) fn is_closed(&self) -> bool {
        self.closed || self.task.as_ref().is_some_and(|(q, _)| q.is_closed())
    }

    /// Takes no more work: what is queued finishes, nothing new starts.
    pub(super) fn close(&mut self) {
        self.closed = true;
        if let Some((q, _)) = &self.task {
            q.close_channel();
        }
    }
}

/// Runs a socket's handler futures: each starts in the order its event arrived, and they
/// then proceed concurrently (as Node's listeners do once they await), except that a
/// [`Job::Barrier`] holds back what follows it until it completes.
///
/// `jobs` counts the jobs received and not completed (the sender counts them in).
async fn socket_task(mut queue: mpsc::UnboundedReceiver<Job>, jobs: Arc<AtomicUsize>) {
    let drive = |running: &mut FuturesUnordered<BoxFuture<()>>, cx: &mut Context<'_>| {
        while let Poll::Ready(Some(())) = running.poll_next_unpin(cx) {
            jobs.fetch_sub(1, Ordering::AcqRel);
        }
    };
    let mut running = FuturesUnordered::new();
    let mut barrier: Option<BoxFuture<()>> = None;
    let mut open = true;
    futures::future::poll_fn(|cx| {
        loop {
            if let Some(b) = barrier.as_mut() {
                if b.as_mut().poll(cx).is_pending() {
                    break;
                }
                barrier = None;
                jobs.fetch_sub(1, Ordering::AcqRel);
            }
            if !open {
                break;
            }
            match queue.poll_next_unpin(cx) {
                Poll::Ready(Some(Job::Handler(f))) => running.push(f),
                Poll::Ready(Some(Job::Barrier(f))) => {
                    // What came before starts first.
                    drive(&mut running, cx);
                    barrier = Some(f);
                }
                Poll::Ready(None) => open = false,
                Poll::Pending => break,
            }
        }
        drive(&mut running, cx);
        if !open && barrier.is_none() && running.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}
