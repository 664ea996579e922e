//! The scoring inputs from their protobuf messages: what a stored
//! registration or record means. The server converts requests and stored
//! entries with these functions too (`server/src/convert.rs` re-exports
//! them), so a verifier reads every entry exactly as the service does.

use ecocode_messages::v1 as pb;
use scoring::{Enterprise, Record, RecordFields, Seq, Timestamp, ValidationError};

pub fn timestamp(t: &prost_types::Timestamp, field: &str) -> Result<Timestamp, ValidationError> {
    Timestamp::from_unix(t.seconds, t.nanos).ok_or_else(|| {
        ValidationError::new(field, format!("is not a valid timestamp ({}s, {}ns)", t.seconds, t.nanos))
    })
}

pub fn optional_timestamp(
    t: Option<&prost_types::Timestamp>,
    field: &str,
) -> Result<Option<Timestamp>, ValidationError> {
    t.map(|t| timestamp(t, field)).transpose()
}

pub fn enterprise(e: &pb::Enterprise) -> Result<Enterprise, ValidationError> {
    Enterprise::new(&e.uscc, &e.name, &e.region_code, &e.industry_code)
}

/// `refers_to_seq = 0` means "none": seq 0 is always the ledger's first
/// registration, never a scored record a workflow step could act on.
pub fn record(r: &pb::Record) -> Result<Record, ValidationError> {
    Record::new(RecordFields {
        source: &r.source,
        source_record_id: &r.source_record_id,
        uscc: &r.uscc,
        kind: &r.kind,
        occurred_at: optional_timestamp(r.occurred_at.as_ref(), "occurred_at")?,
        amount_yuan: r.amount_yuan,
        refers_to: (r.refers_to_seq != 0).then_some(Seq(r.refers_to_seq)),
        description: &r.description,
        attributes: r.attributes.clone(),
    })
}
