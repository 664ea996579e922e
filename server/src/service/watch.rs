//! Watches: one task per watching client that pushes a [`CodeChange`]
//! when a watched enterprise's colour changes, because of a new entry or
//! because a record expired with the passage of time.
//!
//! The task listens to the append pipeline's broadcast of changed USCCs, so
//! ingest never waits for a watcher: a slow watcher lags the broadcast and
//! then re-evaluates everything it watches instead of missing a change.
//! Each evaluation re-checks a lender's grant (`--lender-access granted`):
//! once it is revoked or has expired, the watch ends with
//! `FAILED_PRECONDITION` instead of sending the enterprise's details.

use std::collections::HashMap;
use std::sync::Arc;

use scoring::{Timestamp, Uscc};
use tokio::sync::{broadcast, mpsc};

use super::{CodeChange, ScoreView, Service};
use crate::error::{Error, Result};

struct Watched {
    view: ScoreView,
    /// When the score can next change with no new entry.
    next_change: Option<Timestamp>,
}

pub(crate) async fn run(
    state: Arc<Service>,
    reader: crate::principals::Principal,
    initial: HashMap<String, (ScoreView, Option<Timestamp>)>,
    mut changes: broadcast::Receiver<Uscc>,
    tx: mpsc::Sender<Result<CodeChange>>,
) {
    let mut stopping = state.stopping();
    let mut watched = HashMap::new();
    for (uscc, (view, next_change)) in initial {
        // The first message per enterprise is its current code, with
        // `previous` unspecified, so a client starts from a known state.
        let first = CodeChange { uscc: view.enterprise.uscc.clone(), previous: None, view: view.clone() };
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        watched.insert(uscc, Watched { view, next_change });
    }
    loop {
        // Graceful shutdown waits for open calls; a watch never ends by
        // itself, so it ends here and the client watches again elsewhere.
        if *stopping.borrow_and_update() {
            let _ = tx.send(Err(Error::Unavailable("the server is shutting down; watch again".into()))).await;
            return;
        }
        let deadline = watched.values().filter_map(|w| w.next_change).min();
        let sleep = async {
            match deadline {
                Some(t) => state.clock().sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let due: Vec<String> = tokio::select! {
            _ = tx.closed() => return,
            _ = stopping.changed() => continue,
            changed = changes.recv() => match changed {
                Ok(uscc) if watched.contains_key(uscc.as_str()) => vec![uscc.to_string()],
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => watched.keys().cloned().collect(),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            () = sleep => {
                let now = state.clock().now();
                watched
                    .iter()
                    .filter(|(_, w)| w.next_change.is_some_and(|t| t <= now))
                    .map(|(u, _)| u.clone())
                    .collect()
            }
        };
        // Coalesce a burst: whatever else changed meanwhile is evaluated
        // once now, not once per appended record.
        let mut due: std::collections::BTreeSet<String> = due.into_iter().collect();
        loop {
            match changes.try_recv() {
                Ok(uscc) if watched.contains_key(uscc.as_str()) => {
                    due.insert(uscc.to_string());
                }
                Ok(_) => {}
                Err(broadcast::error::TryRecvError::Lagged(_)) => due.extend(watched.keys().cloned()),
                Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed) => break,
            }
        }
        for uscc in due {
            let Some(w) = watched.get_mut(&uscc) else { continue };
            // Evaluation reads the ledger and computes: off the async workers,
            // so watchers never stall other calls.
            let evaluated = {
                let (state, key, reader) = (state.clone(), uscc.clone(), reader.clone());
                // The reasons as the watcher receives them (publicity), and
                // only while a lender still holds a live grant: a revoked
                // or expired one ends the watch before anything is sent.
                tokio::task::spawn_blocking(move || {
                    let (view, next) = state.evaluate_for_watch(&key)?;
                    state.lender_grant(&reader, &view.enterprise, crate::consent::Cover::Details)?;
                    Ok((state.disclosed(&reader, view)?, next))
                })
                .await
                .unwrap_or_else(|e| Err(Error::Internal(format!("watch evaluation failed: {e}"))))
            };
            let (view, next) = match evaluated {
                Ok(evaluated) => evaluated,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            w.next_change = next;
            let previous = w.view.evaluation.code;
            let current = view.evaluation.code;
            w.view = view;
            if previous != current {
                let change = CodeChange {
                    uscc: w.view.enterprise.uscc.clone(),
                    previous: Some(previous),
                    view: w.view.clone(),
                };
                if tx.send(Ok(change)).await.is_err() {
                    return;
                }
            }
        }
    }
}
