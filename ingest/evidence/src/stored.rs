//! A stored ledger payload (the protobuf encoding of `ecocode.v1.LedgerEvent`,
//! exactly as hashed into the chain), decoded into what scoring needs. The
//! server's event decoder (`server/src/events.rs`) starts here, so the
//! service and an offline verifier read the same bytes the same way.

use ecocode_messages::v1 as pb;
use prost::Message;
use scoring::{Enterprise, Record};
use tlog::hash;

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
/// is an error naming the seq. A committed record comes out with its
/// scoring fields alone ([`Record::scoring_fields`]): what a verifier that
/// holds only the hashed bytes can know, and all the score needs.
pub fn decode(seq: u64, payload: &[u8]) -> Result<Stored> {
    decode_with_details(seq, payload, &[])
}

/// [`decode`] with what was stored beside the entry: a committed record's
/// details (an encoded `RecordDetails`), which must open its commitment
/// and agree with its clear fields; the record then comes out whole.
/// Empty `details` decode as [`decode`] does; details beside any other
/// event are an error.
pub fn decode_with_details(seq: u64, payload: &[u8], details: &[u8]) -> Result<Stored> {
    let bad = |what: String| Error::Payload { seq, what };
    let event =
        pb::LedgerEvent::decode(payload).map_err(|e| bad(format!("payload is not a LedgerEvent: {e}")))?;
    if !details.is_empty() && !matches!(event.event, Some(pb::ledger_event::Event::CommittedRecord(_))) {
        return Err(bad("details are stored beside an entry that is no committed record".into()));
    }
    Ok(match event.event {
        Some(pb::ledger_event::Event::Registration(e)) => Stored::Registration(
            convert::enterprise(&e).map_err(|e| bad(format!("stored registration is invalid: {e}")))?,
        ),
        Some(pb::ledger_event::Event::Record(r)) => {
            Stored::Record(convert::record(&r).map_err(|e| bad(format!("stored record is invalid: {e}")))?)
        }
        Some(pb::ledger_event::Event::CommittedRecord(c)) if details.is_empty() => Stored::Record(
            scoring_fields(&c).map_err(|e| bad(format!("stored committed record is invalid: {e}")))?,
        ),
        Some(pb::ledger_event::Event::CommittedRecord(c)) => Stored::Record(open(seq, &c, details)?),
        Some(pb::ledger_event::Event::ScoringModel(m)) => {
            Stored::ScoringModel { version: m.version, model: m.model }
        }
        Some(other) => Stored::Other(other),
        None => return Err(bad("payload holds no event".into())),
    })
}

/// The committed form of `record` (its canonical encoding) under `salt`:
/// the clear scoring fields and the commitment (the entry's payload
/// event), and the details that open it (stored beside the entry). The one
/// definition of what a committed record shows: [`open`] checks a stored
/// one by computing this again.
pub fn commit(record: &pb::Record, salt: &[u8; hash::SALT_LEN]) -> (pb::CommittedRecord, pb::RecordDetails) {
    let bytes = record.encode_to_vec();
    let committed = pb::CommittedRecord {
        uscc: record.uscc.clone(),
        kind: record.kind.clone(),
        occurred_at: record.occurred_at,
        amount_yuan: record.amount_yuan,
        refers_to_seq: record.refers_to_seq,
        outcome: record.attributes.get(OUTCOME).cloned().unwrap_or_default(),
        details_commitment: hash::details_commitment(salt, &bytes).to_vec(),
    };
    (committed, pb::RecordDetails { salt: salt.to_vec(), record: bytes })
}

/// The one attribute the scoring rules read (dispute resolutions).
const OUTCOME: &str = "outcome";

/// The record a committed record's `details` open, checked: the details
/// decode, the salt is 32 bytes, and committing the record under it gives
/// exactly the stored clear fields and commitment.
pub fn open(seq: u64, committed: &pb::CommittedRecord, details: &[u8]) -> Result<Record> {
    let bad = |what: String| Error::Payload { seq, what };
    let details = pb::RecordDetails::decode(details)
        .map_err(|e| bad(format!("stored details are not RecordDetails: {e}")))?;
    let salt: &[u8; hash::SALT_LEN] = details.salt.as_slice().try_into().map_err(|_| {
        bad(format!("stored details: the salt is {} bytes, not {}", details.salt.len(), hash::SALT_LEN))
    })?;
    let record = pb::Record::decode(details.record.as_slice())
        .map_err(|e| bad(format!("stored details: the record does not decode: {e}")))?;
    if record.encode_to_vec() != details.record {
        return Err(bad("stored details: the record is not in its canonical encoding".into()));
    }
    if commit(&record, salt).0 != *committed {
        return Err(bad("stored details do not open the entry's commitment".into()));
    }
    convert::record(&record).map_err(|e| bad(format!("stored record is invalid: {e}")))
}

/// The scoring fields of a committed record, as a record.
fn scoring_fields(c: &pb::CommittedRecord) -> Result<Record, scoring::ValidationError> {
    if c.details_commitment.len() != 32 {
        return Err(scoring::ValidationError::new(
            "details_commitment",
            format!("is {} bytes, not 32", c.details_commitment.len()),
        ));
    }
    let attributes = match c.outcome.is_empty() {
        true => Default::default(),
        false => [(OUTCOME.to_owned(), c.outcome.clone())].into(),
    };
    Record::scoring_fields(scoring::RecordFields {
        uscc: &c.uscc,
        kind: &c.kind,
        occurred_at: convert::optional_timestamp(c.occurred_at.as_ref(), "occurred_at")?,
        amount_yuan: c.amount_yuan,
        refers_to: (c.refers_to_seq != 0).then_some(scoring::Seq(c.refers_to_seq)),
        attributes,
        ..Default::default()
    })
}
