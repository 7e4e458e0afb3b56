//! Wake-ups: the `NOTIFY` side task that announces this store's appends to
//! other processes, and the shared `LISTEN` task that wakes this process's
//! subscribers on other processes' appends.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use orchestrix::retry::RetryPolicy;
use sqlx::postgres::{PgConnection, PgListener, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use tokio::sync::Notify;

use super::PgStore;

/// The side task that sends one `NOTIFY` per burst of appends, over a
/// connection of its own: a pool connection would cost two more round
/// trips per `NOTIFY` (sqlx tests it on acquire and on release), and
/// would be taken from the appends' pool while it notifies.
pub(super) struct Notifier {
    pub(super) pool: PgPool,
    pub(super) appended: Arc<Notify>,
    pub(super) sql: String,
    pub(super) channel: String,
    pub(super) interval: Duration,
}

impl Notifier {
    pub(super) async fn run(self) {
        let mut connection: Option<PgConnection> = None;
        loop {
            tokio::select! {
                () = self.appended.notified() => {}
                // The connection closes with the pool.
                () = self.pool.close_event() => {
                    if let Some(open) = connection.take() {
                        let _ = open.close().await;
                    }
                    return;
                }
            }
            // A connection that died (a server restart, say) is replaced
            // and the NOTIFY sent again, once: a lost notification only
            // delays other processes' subscribers until their next poll.
            for _ in 0..2 {
                if connection.is_none() {
                    connection = self.connect().await;
                }
                let Some(open) = connection.as_mut() else { break };
                match sqlx::query(&self.sql).bind(&self.channel).execute(&mut *open).await {
                    Ok(_) => break,
                    Err(error) => {
                        tracing::debug!(%error, "orchestrix: NOTIFY failed; reconnecting");
                        connection = None;
                    }
                }
            }
            // At most one NOTIFY per interval: appends meanwhile leave one
            // stored permit, so the last burst is still announced.
            tokio::time::sleep(self.interval).await;
        }
    }

    async fn connect(&self) -> Option<PgConnection> {
        let options = self.pool.connect_options();
        match tokio::time::timeout(Duration::from_secs(10), options.connect()).await {
            Ok(Ok(connection)) => Some(connection),
            Ok(Err(error)) => {
                tracing::debug!(%error, "orchestrix: NOTIFY connection failed; subscribers fall back to polling");
                None
            }
            Err(_) => {
                tracing::debug!("orchestrix: NOTIFY connection timed out; subscribers fall back to polling");
                None
            }
        }
    }
}

impl PgStore {
    /// Wakes this process's subscribers and the notifier after an append.
    pub(super) fn wake_local(&self) {
        self.inner.wake.send_modify(|n| *n = n.wrapping_add(1));
        self.inner.appended.notify_one();
    }

    /// Starts the shared `LISTEN` task, once.
    ///
    /// It listens on a connection of its own: a `PgListener` keeps the
    /// pool connection it is given for as long as it lives, so through the
    /// store's pool it took one connection from the appends for good.
    pub(super) fn ensure_listener(&self) {
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        if tasks.listener.is_some() {
            return;
        }
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(self.inner.config.acquire_timeout)
            .connect_lazy_with((*self.inner.pool.connect_options()).clone());
        let (wake, channel) = (self.inner.wake.clone(), self.inner.config.channel());
        let task = tokio::spawn(async move {
            // Failed attempts in a row, and one after a lost connection.
            let mut failures = 0;
            loop {
                if failures > 0 {
                    tokio::time::sleep(listen_pause(failures)).await;
                }
                let mut listener = match PgListener::connect_with(&pool).await {
                    Ok(listener) => listener,
                    Err(error) => {
                        tracing::debug!(%error, "orchestrix: LISTEN connection failed; polling");
                        failures += 1;
                        continue;
                    }
                };
                if let Err(error) = listener.listen(&channel).await {
                    tracing::debug!(%error, "orchestrix: LISTEN failed; polling");
                    failures += 1;
                    continue;
                }
                loop {
                    match listener.recv().await {
                        Ok(_) => wake.send_modify(|n| *n = n.wrapping_add(1)),
                        Err(error) => {
                            // Notifications may have been missed: wake
                            // everyone to poll, then reconnect.
                            tracing::debug!(%error, "orchestrix: LISTEN connection lost; reconnecting");
                            wake.send_modify(|n| *n = n.wrapping_add(1));
                            failures = 1;
                            break;
                        }
                    }
                }
            }
        });
        tasks.listener = Some(task.abort_handle());
    }
}

/// How long the `LISTEN` task waits before it connects again, after
/// `failures` failed attempts in a row (a lost connection counts as one):
/// 200 ms, doubling up to 1 s, without jitter. Subscribers poll meanwhile.
fn listen_pause(failures: u32) -> Duration {
    const MAX: Duration = Duration::from_secs(1);
    RetryPolicy::exponential(u32::MAX, Duration::from_millis(200))
        .with_max_delay(MAX)
        .with_jitter(0.0)
        .delay_after(failures)
        .unwrap_or(MAX)
}
