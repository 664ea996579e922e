//! Everything held about an enterprise, in one request: each of its
//! ledger entries with an inclusion proof against one published
//! checkpoint, every access grant and every inquiry; streamed, so a large
//! history costs memory for a chunk, not for the whole.

use super::*;
use crate::consent::GrantState;

/// One item of an export, in order: the checkpoint, the entries (ascending
/// seq), the grants (newest first), the inquiries (newest first).
#[derive(Debug)]
pub enum ExportItem {
    Checkpoint(Checkpoint),
    /// An entry about the enterprise and its audit path in the checkpoint's tree.
    Entry(Entry, Vec<Hash>),
    Grant(GrantState),
    Inquiry(Inquiry),
}

/// Entries proven per blocking task.
const CHUNK: usize = 256;

impl Service {
    /// Streams everything held about `uscc` to `who`: the enterprise
    /// itself, a regulator of its region or an admin ([`auth::may_export`]).
    pub async fn export(
        self: &Arc<Self>,
        who: &Principal,
        uscc: &Uscc,
    ) -> Result<mpsc::Receiver<Result<ExportItem>>> {
        let enterprise = self
            .registered(uscc.as_str())
            .await?
            .ok_or_else(|| Error::NotFound(format!("enterprise {uscc} is not registered")))?;
        auth::may_export(who, &enterprise)?;
        let checkpoint = self.published_checkpoint()?;
        let (tx, rx) = mpsc::channel(CHUNK);
        let (service, who, uscc) = (self.clone(), who.clone(), uscc.clone());
        tokio::spawn(async move {
            let size = checkpoint.tree_size;
            if tx.send(Ok(ExportItem::Checkpoint(checkpoint))).await.is_err() {
                return;
            }
            let subject = uscc.to_string();
            let reader = service.clone();
            let entries = blocking(move || Ok(reader.ledger.entries_for_subject(subject.as_bytes())?)).await;
            let entries: Vec<Entry> = match entries {
                Ok(all) => all.into_iter().filter(|e| e.seq < size).collect(),
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            for chunk in entries.chunks(CHUNK) {
                let (reader, chunk) = (service.clone(), chunk.to_vec());
                let proven = blocking(move || {
                    chunk
                        .into_iter()
                        .map(|e| {
                            let hashes = reader.ledger.inclusion_proof(e.seq, size)?;
                            Ok(ExportItem::Entry(e, hashes))
                        })
                        .collect::<Result<Vec<_>>>()
                })
                .await;
                match proven {
                    Ok(items) => {
                        for item in items {
                            if tx.send(Ok(item)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
            let grants = match service.list_grants(&who, Some(&uscc)).await {
                Ok(grants) => grants,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            for g in grants {
                if tx.send(Ok(ExportItem::Grant(g))).await.is_err() {
                    return;
                }
            }
            let mut after = None;
            loop {
                let page = match service.list_inquiries(&who, Some(&uscc), None, None, MAX_PAGE, after).await
                {
                    Ok(page) => page,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                for i in page.inquiries {
                    if tx.send(Ok(ExportItem::Inquiry(i))).await.is_err() {
                        return;
                    }
                }
                match page.next {
                    Some(next) => after = Some(next),
                    None => return,
                }
            }
        });
        Ok(rx)
    }
}
