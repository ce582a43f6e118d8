//! `StoreHandle`: the daemon's access to the store. It owns the `Store` on a dedicated thread,
//! batches queued writes into one transaction, and answers and broadcasts only after the commit.
use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::{
    ConnectionRow, ConnectionSummaryUpdate, MAX_BATCH, QUEUE_CAPACITY, Query, RetentionReport,
    Store, StoreStats, Write, Written,
};

type Call = Box<dyn FnOnce(&mut Store) + Send>;

enum Request {
    Write(Write, Option<oneshot::Sender<Result<i64>>>),
    Call(Call),
}

struct Shared {
    dropped: AtomicU64,
    alerts: broadcast::Sender<Value>,
    connections: broadcast::Sender<Value>,
}

/// The store on its own thread, for async callers. Cheap to clone.
///
/// Writes are queued; the thread commits everything queued (up to `MAX_BATCH`) in one
/// transaction, then answers waiting callers and broadcasts what was committed: stored alert
/// documents on `subscribe_alerts`, updated `ConnectionRow`s (as JSON) on
/// `subscribe_connections`. Reads run on the same thread, between batches, in queue order.
#[derive(Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<Request>,
    shared: Arc<Shared>,
}

impl StoreHandle {
    /// Open the store in `dir` and start its thread.
    pub fn open(dir: &Path) -> Result<StoreHandle> {
        StoreHandle::spawn(Store::open(dir)?)
    }

    pub fn spawn(store: Store) -> Result<StoreHandle> {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let shared = Arc::new(Shared {
            dropped: AtomicU64::new(0),
            alerts: broadcast::channel(1024).0,
            connections: broadcast::channel(1024).0,
        });
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("relaywatch-store".into())
            .spawn(move || store_thread(store, rx, &thread_shared))
            .context("starting the store thread")?;
        Ok(StoreHandle { tx, shared })
    }

    fn queue(&self, write: Write) {
        if self.tx.try_send(Request::Write(write, None)).is_err() {
            let n = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n == 1 || n.is_power_of_two() {
                log::warn!("store: write queue full or closed; {n} writes dropped so far");
            }
        }
    }

    /// Queue an alert without waiting (dropped and counted if the queue is full).
    pub fn submit_alert(&self, alert: Value) {
        self.queue(Write::Alert(alert));
    }

    /// Queue a connection update without waiting (dropped and counted if the queue is full).
    pub fn record_connection(&self, update: ConnectionSummaryUpdate) {
        self.queue(Write::Connection(update));
    }

    /// Queue a known relay (inserted or replaced by host) without waiting.
    pub fn record_relay(&self, relay: Value) {
        self.queue(Write::Relay(relay));
    }

    /// The known relays, most recently seen first.
    pub async fn relays(&self) -> Result<Vec<Value>> {
        self.call(|s| s.relays()).await
    }

    #[cfg(test)]
    /// Store an alert and wait until it is committed; returns its id.
    pub async fn insert_alert(&self, alert: Value) -> Result<i64> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request::Write(Write::Alert(alert), Some(reply)))
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Run `f` on the store thread and return its result.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let call: Call = Box::new(move |store| {
            let _ = reply.send(f(store));
        });
        self.tx
            .send(Request::Call(call))
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    pub async fn alerts(&self, query: Query) -> Result<Vec<Value>> {
        self.call(move |s| s.alerts(&query)).await
    }

    pub async fn connections(&self, query: Query) -> Result<Vec<ConnectionRow>> {
        self.call(move |s| s.connections(&query)).await
    }

    pub async fn apply_retention(
        &self,
        max_age: Duration,
        max_bytes: u64,
    ) -> Result<RetentionReport> {
        self.call(move |s| s.apply_retention(max_age, max_bytes))
            .await
    }

    pub async fn stats(&self) -> Result<StoreStats> {
        let mut stats = self.call(|s| s.stats()).await?;
        stats.dropped_writes = self.shared.dropped.load(Ordering::Relaxed);
        Ok(stats)
    }

    /// Wait until every write queued before this call is committed.
    pub async fn flush(&self) -> Result<()> {
        self.call(|_| Ok(())).await
    }

    pub fn subscribe_alerts(&self) -> broadcast::Receiver<Value> {
        self.shared.alerts.subscribe()
    }

    pub fn subscribe_connections(&self) -> broadcast::Receiver<Value> {
        self.shared.connections.subscribe()
    }
}

fn closed() -> anyhow::Error {
    anyhow!("the store thread has stopped")
}

fn store_thread(mut store: Store, mut rx: mpsc::Receiver<Request>, shared: &Shared) {
    let mut next: Option<Request> = None;
    loop {
        let request = match next.take() {
            Some(r) => r,
            None => match rx.blocking_recv() {
                Some(r) => r,
                None => break,
            },
        };
        let (first, first_reply) = match request {
            Request::Call(f) => {
                f(&mut store);
                continue;
            }
            Request::Write(w, reply) => (w, reply),
        };
        let mut writes = vec![first];
        let mut replies = vec![first_reply];
        while writes.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Request::Write(w, reply)) => {
                    writes.push(w);
                    replies.push(reply);
                }
                Ok(call) => {
                    next = Some(call);
                    break;
                }
                Err(_) => break,
            }
        }
        match store.write_batch(writes) {
            Ok(results) => {
                for (result, reply) in results.into_iter().zip(replies) {
                    let id = match result {
                        Ok(Written::Alert(id, doc)) => {
                            let _ = shared.alerts.send(doc);
                            Ok(id)
                        }
                        Ok(Written::Connection(row)) => {
                            if let Ok(v) = serde_json::to_value(&row) {
                                let _ = shared.connections.send(v);
                            }
                            Ok(0)
                        }
                        Ok(Written::Relay) => Ok(0),
                        Err(e) => Err(e),
                    };
                    match (reply, id) {
                        (Some(reply), id) => {
                            let _ = reply.send(id);
                        }
                        (None, Err(e)) => log::warn!("store: write refused: {e:#}"),
                        (None, Ok(_)) => {}
                    }
                }
            }
            Err(e) => {
                log::error!("store: batch of {} writes lost: {e:#}", replies.len());
                let message = format!("{e:#}");
                for reply in replies.into_iter().flatten() {
                    let _ = reply.send(Err(anyhow!("{message}")));
                }
            }
        }
    }
}
