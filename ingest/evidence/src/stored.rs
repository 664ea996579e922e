//! A stored ledger payload (the protobuf encoding of `ecocode.v1.LedgerEvent`,
//! exactly as hashed into the chain), decoded into what scoring needs. The
//! server's event decoder (`server/src/events.rs`) starts here, so the
//! service and an offline verifier read the same bytes the same way.

use ecocode_messages::v1 as pb;
use prost::Message;
use scoring::{Enterprise, Record};

use crate::convert;
use crate::error::{Error, Result};

/// A decoded payload: the scoring inputs in domain types, every other event
/// as its message.
#[derive(Clone, Debug, PartialEq)]
pub enum Stored {
    Registration(Enterprise),
    Record(Record),
    /// A scoring model's exact file (`ScoringModel`).
    ScoringModel {
        version: String,
        model: Vec<u8>,
    },
    /// An event scoring does not read (monitoring points, outages, updates,
    /// ...): the server decodes it further.
    Other(pb::ledger_event::Event),
}

/// Decodes the payload of entry `seq`; anything that is not a valid event
/// is an error naming the seq.
pub fn decode(seq: u64, payload: &[u8]) -> Result<Stored> {
    let bad = |what: String| Error::Payload { seq, what };
    let event =
        pb::LedgerEvent::decode(payload).map_err(|e| bad(format!("payload is not a LedgerEvent: {e}")))?;
    Ok(match event.event {
        Some(pb::ledger_event::Event::Registration(e)) => Stored::Registration(
            convert::enterprise(&e).map_err(|e| bad(format!("stored registration is invalid: {e}")))?,
        ),
        Some(pb::ledger_event::Event::Record(r)) => {
            Stored::Record(convert::record(&r).map_err(|e| bad(format!("stored record is invalid: {e}")))?)
        }
        Some(pb::ledger_event::Event::ScoringModel(m)) => {
            Stored::ScoringModel { version: m.version, model: m.model }
        }
        Some(other) => Stored::Other(other),
        None => return Err(bad("payload holds no event".into())),
    })
}
