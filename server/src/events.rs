//! The storage format of ledger events: the one place that encodes a fact
//! into a ledger entry (payload, subject, idempotency key and fingerprint)
//! and decodes it back.
//!
//! The payload is the protobuf encoding of `ecocode.v1.LedgerEvent`, stored
//! verbatim and hashed into the chain, so these bytes can never change for
//! an entry already written: a field may be added to the proto (old entries
//! decode with its default), but no field may be renumbered, retyped or
//! given a new meaning, and the canonical form of each event (what
//! [`to_proto`] produces) must stay byte-identical. The golden test below
//! pins the exact bytes and fingerprints; see `docs/ledger.md`.
//!
//! Idempotency keys, by event:
//! * registration: `"enterprise\0" ‖ USCC`, fingerprint `BLAKE3(enterprise)`;
//! * record: `"record\0" ‖ source ‖ "\0" ‖ source_record_id`, fingerprint
//!   `BLAKE3(record)`; written as a committed record (`CommittedRecord`:
//!   the scoring fields in clear and a salted commitment, the salt and
//!   record stored beside the entry as its details), so a reader may be
//!   given what scoring needs without the rest; records written before
//!   (`Record` payloads) decode as ever;
//! * monitoring point: `"point\0" ‖ MN ‖ "\0" ‖ fingerprint`, fingerprint
//!   `BLAKE3(point)`, so new limits supersede and the same limits are a
//!   duplicate.
//!
//! * platform outage: `"outage\0" ‖ component ‖ "\0" ‖ from` (Unix
//!   nanoseconds, big-endian), fingerprint `BLAKE3(outage)`; subject
//!   `platform`;
//! * scoring model: `"model\0" ‖ version`, fingerprint `BLAKE3(model)`;
//!   subject `platform`; a changed file under a published version is a
//!   conflict (refused at start);
//! * enterprise update: `"enterprise-update\0" ‖ USCC ‖ "\0" ‖ seq of the
//!   entry it changes (big-endian)`, fingerprint `BLAKE3(update)`, so the
//!   same change sent twice against the same state is one entry.
//! * access grant: `"grant\0" ‖ USCC ‖ "\0" ‖ fingerprint`, fingerprint
//!   `BLAKE3(grant)`, so the same grant sent twice is one entry;
//! * access revocation: `"grant-revoked\0" ‖ USCC ‖ "\0" ‖ grant seq
//!   (big-endian)`, fingerprint `BLAKE3(revocation)`: a grant is revoked once.
//!
//! where each BLAKE3 is over the canonical protobuf encoding of the event's
//! message. The subject of every other event is the enterprise's USCC.

use ecocode_proto::v1 as pb;
use hj212::{MonitoringPoint, Outage};
use ledger::{Entry, Idempotency, NewEntry};
use prost::Message;
use scoring::{Enterprise, Record, Uscc};

use crate::consent::Grant;
use crate::convert::{from_proto, to_proto};
use crate::enterprise::EnterpriseUpdate;
use crate::error::{Error, Result};
use evidence::stored::Stored;

/// A fact of the ledger, decoded.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Registration(Enterprise),
    Record(Record),
    MonitoringPoint(MonitoringPoint),
    /// The HJ 212 gateway was down; stored under the subject `platform`,
    /// which is no USCC, so no enterprise's entries include it.
    PlatformOutage(Outage),
    /// A change of an enterprise's details or status, made to the state
    /// set by the entry at `changes_seq`.
    EnterpriseUpdate {
        update: EnterpriseUpdate,
        changes_seq: u64,
    },
    /// An index entry: the ledger ends every signed checkpoint with one
    /// (`docs/ledger.md`, "The subject index"). It is about no enterprise
    /// (empty subject) and only the ledger writes it.
    Index(tlog::index::Commitment),
    /// A scoring model's exact file, the first time the service uses its
    /// version (subject `platform`); scores name this entry by its hash.
    ScoringModel {
        version: String,
        model: Vec<u8>,
    },
    /// Access an enterprise grants a lender to its details.
    AccessGrant(Grant),
    /// Ends the grant at `grant_seq` from this entry's time.
    AccessRevocation {
        uscc: Uscc,
        grant_seq: u64,
    },
}

/// The first byte of a record's payload: field 2 of `LedgerEvent`, wire
/// type 2 (length-delimited), or field 9 for a committed record.
const RECORD_TAG: u8 = (2 << 3) | 2;
const COMMITTED_RECORD_TAG: u8 = (9 << 3) | 2;

/// The subject of platform-wide entries.
pub const PLATFORM_SUBJECT: &str = "platform";

impl Event {
    /// The entry to append for this event, submitted by principal `submitted_by`.
    pub fn encode(&self, submitted_by: &str) -> NewEntry {
        let (event, subject, key, fingerprint) = match self {
            // The ledger refuses this payload from anyone but its writer.
            Event::Index(commitment) => {
                return NewEntry {
                    payload: commitment.payload(),
                    subject: Vec::new(),
                    idempotency: None,
                    details: Vec::new(),
                };
            }
            Event::Registration(e) => {
                let canonical = to_proto::enterprise(e);
                let fingerprint = fingerprint(&canonical);
                let key = [b"enterprise\0".as_slice(), e.uscc.as_str().as_bytes()].concat();
                (pb::ledger_event::Event::Registration(canonical), e.uscc.as_str(), key, fingerprint)
            }
            Event::Record(r) => return Event::encode_record(r, submitted_by),
            // Keyed by version alone, fingerprinted by the file: a restart
            // with the same file is a duplicate, and another file under a
            // version already published is a conflict the service refuses.
            Event::ScoringModel { version, model } => {
                let canonical = pb::ScoringModel { version: version.clone(), model: model.clone() };
                let fingerprint = fingerprint(&canonical);
                let key = [b"model\0".as_slice(), version.as_bytes()].concat();
                (pb::ledger_event::Event::ScoringModel(canonical), PLATFORM_SUBJECT, key, fingerprint)
            }
            Event::MonitoringPoint(p) => {
                let canonical = to_proto::monitoring_point(p);
                let fingerprint = fingerprint(&canonical);
                let key = [b"point\0".as_slice(), p.mn().as_bytes(), b"\0", &fingerprint].concat();
                (pb::ledger_event::Event::MonitoringPoint(canonical), p.uscc().as_str(), key, fingerprint)
            }
            Event::EnterpriseUpdate { update, changes_seq } => {
                let canonical = to_proto::enterprise_update(update);
                let fingerprint = fingerprint(&canonical);
                let uscc = update.enterprise.uscc.as_str();
                let key =
                    [b"enterprise-update\0".as_slice(), uscc.as_bytes(), b"\0", &changes_seq.to_be_bytes()]
                        .concat();
                (pb::ledger_event::Event::EnterpriseUpdate(canonical), uscc, key, fingerprint)
            }
            Event::PlatformOutage(o) => {
                let canonical = to_proto::platform_outage(o);
                let fingerprint = fingerprint(&canonical);
                let key = [
                    b"outage\0".as_slice(),
                    canonical.component.as_bytes(),
                    b"\0",
                    &o.from.unix_nanos().to_be_bytes(),
                ]
                .concat();
                (pb::ledger_event::Event::PlatformOutage(canonical), PLATFORM_SUBJECT, key, fingerprint)
            }
            Event::AccessGrant(g) => {
                let canonical = to_proto::access_grant(g);
                let fingerprint = fingerprint(&canonical);
                let key = [b"grant\0".as_slice(), g.uscc.as_str().as_bytes(), b"\0", &fingerprint].concat();
                (pb::ledger_event::Event::AccessGrant(canonical), g.uscc.as_str(), key, fingerprint)
            }
            Event::AccessRevocation { uscc, grant_seq } => {
                let canonical = pb::AccessRevocation { uscc: uscc.to_string(), grant_seq: *grant_seq };
                let fingerprint = fingerprint(&canonical);
                let key = [
                    b"grant-revoked\0".as_slice(),
                    uscc.as_str().as_bytes(),
                    b"\0",
                    &grant_seq.to_be_bytes(),
                ]
                .concat();
                (pb::ledger_event::Event::AccessRevocation(canonical), uscc.as_str(), key, fingerprint)
            }
        };
        let payload = pb::LedgerEvent { event: Some(event), submitted_by: submitted_by.to_owned() };
        NewEntry {
            payload: payload.encode_to_vec(),
            subject: subject.as_bytes().to_vec(),
            idempotency: Some(Idempotency { key, fingerprint }),
            details: Vec::new(),
        }
    }

    /// [`Event::encode`] of `Event::Record(record)`, without moving the
    /// record: a committed record under a fresh random salt.
    pub fn encode_record(record: &Record, submitted_by: &str) -> NewEntry {
        let mut salt = [0; tlog::hash::SALT_LEN];
        // The operating system's generator failing is no state to go on in.
        getrandom::fill(&mut salt).expect("the operating system's random generator failed");
        Event::encode_record_salted(record, submitted_by, &salt)
    }

    /// [`Event::encode_record`] under a given salt (tests pin its bytes).
    /// The idempotency fingerprint is over the record, not the salt, so
    /// the same record sent again is a duplicate.
    pub fn encode_record_salted(
        record: &Record,
        submitted_by: &str,
        salt: &[u8; tlog::hash::SALT_LEN],
    ) -> NewEntry {
        let canonical = to_proto::record(record);
        let fingerprint = fingerprint(&canonical);
        let key =
            [b"record\0".as_slice(), record.source.as_bytes(), b"\0", record.source_record_id.as_bytes()]
                .concat();
        let (committed, details) = evidence::stored::commit(&canonical, salt);
        let payload = pb::LedgerEvent {
            event: Some(pb::ledger_event::Event::CommittedRecord(committed)),
            submitted_by: submitted_by.to_owned(),
        };
        NewEntry {
            payload: payload.encode_to_vec(),
            subject: record.uscc.as_str().as_bytes().to_vec(),
            idempotency: Some(Idempotency { key, fingerprint }),
            details: details.encode_to_vec(),
        }
    }

    /// Decodes a stored entry. Anything that does not decode to a valid
    /// event is corruption: only [`Event::encode`] writes entries.
    /// Whether a stored payload is a record, from its first byte: the
    /// canonical encoding (the only one this module writes) starts with the
    /// event's oneof field, and a record is field 2 (length-delimited:
    /// tag byte `0x12`). Lets start-up skip decoding the bulk of the
    /// ledger; [`Event::decode`] stays the definition.
    pub fn is_record_payload(payload: &[u8]) -> bool {
        matches!(payload.first(), Some(&(RECORD_TAG | COMMITTED_RECORD_TAG)))
    }

    /// Whether a stored payload is a committed record (`CommittedRecord`),
    /// whose hashed bytes show only its scoring fields, by its first byte.
    pub fn is_committed_record_payload(payload: &[u8]) -> bool {
        payload.first() == Some(&COMMITTED_RECORD_TAG)
    }

    pub fn decode(entry: &Entry) -> Result<Event> {
        let corrupt = |what: String| Error::Ledger(ledger::Error::Corruption { seq: entry.seq, what });
        if tlog::index::is_index_payload(&entry.payload) {
            return tlog::index::Commitment::parse(&entry.payload)
                .map(Event::Index)
                .map_err(|e| corrupt(format!("stored index entry is invalid: {e}")));
        }
        // Registrations and records, what scoring reads, decode in the
        // `evidence` crate: the offline verifier uses the same code.
        let other = match evidence::stored::decode_with_details(entry.seq, &entry.payload, &entry.details) {
            Ok(Stored::Registration(e)) => return Ok(Event::Registration(e)),
            Ok(Stored::Record(r)) => return Ok(Event::Record(r)),
            Ok(Stored::ScoringModel { version, model }) => return Ok(Event::ScoringModel { version, model }),
            Ok(Stored::Other(other)) => other,
            Err(evidence::Error::Payload { what, .. }) => return Err(corrupt(what)),
            Err(e) => return Err(corrupt(e.to_string())),
        };
        Ok(match other {
            pb::ledger_event::Event::MonitoringPoint(p) => Event::MonitoringPoint(
                from_proto::monitoring_point(&p)
                    .map_err(|e| corrupt(format!("stored monitoring point is invalid: {e}")))?,
            ),
            pb::ledger_event::Event::EnterpriseUpdate(u) => Event::EnterpriseUpdate {
                update: from_proto::stored_enterprise_update(&u)
                    .map_err(|e| corrupt(format!("stored enterprise update is invalid: {e}")))?,
                // Not needed after the append: the key is only checked then.
                changes_seq: 0,
            },
            pb::ledger_event::Event::PlatformOutage(o) => Event::PlatformOutage(
                from_proto::platform_outage(&o)
                    .map_err(|e| corrupt(format!("stored platform outage is invalid: {e}")))?,
            ),
            // Decoded by `evidence::stored` above; never `Other`.
            pb::ledger_event::Event::Registration(_)
            | pb::ledger_event::Event::Record(_)
            | pb::ledger_event::Event::CommittedRecord(_)
            | pb::ledger_event::Event::ScoringModel(_) => {
                return Err(corrupt("a registration or record decoded as another event".into()));
            }
            pb::ledger_event::Event::AccessGrant(g) => Event::AccessGrant(
                from_proto::stored_access_grant(&g)
                    .map_err(|e| corrupt(format!("stored access grant is invalid: {e}")))?,
            ),
            pb::ledger_event::Event::AccessRevocation(r) => Event::AccessRevocation {
                uscc: Uscc::parse(&r.uscc)
                    .map_err(|e| corrupt(format!("stored access revocation is invalid: {e}")))?,
                grant_seq: r.grant_seq,
            },
        })
    }
}

fn fingerprint(canonical: &impl Message) -> ledger::Hash {
    *blake3::hash(&canonical.encode_to_vec()).as_bytes()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use expect_test::expect;
    use hj212::{PollutantLimit, Statistic};
    use scoring::{RecordFields, Seq, Timestamp, Uscc};

    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn show(entry: &NewEntry) -> String {
        let idem = entry.idempotency.as_ref().map(|i| (hex(&i.key), hex(&i.fingerprint))).unwrap_or_default();
        format!(
            "payload {}\nsubject {}\nkey {}\nfingerprint {}\n",
            hex(&entry.payload),
            String::from_utf8_lossy(&entry.subject),
            idem.0,
            idem.1
        )
    }

    fn enterprise() -> Enterprise {
        Enterprise::new("91330421739237858X", "Ningbo Acme Dyeing Co.", "330206", "C1713").unwrap()
    }

    fn record() -> Record {
        Record::new(RecordFields {
            source: "beilun-epb",
            source_record_id: "P-2026-0117",
            uscc: "91330421739237858X",
            kind: "penalty.fine",
            occurred_at: Some(Timestamp::parse_rfc3339("2026-03-02T08:00:00Z").unwrap()),
            amount_yuan: 80_000,
            refers_to: Some(Seq(2)),
            description: "COD above permit at DW001",
            attributes: BTreeMap::from([("outlet".to_owned(), "DW001".to_owned())]),
        })
        .unwrap()
    }

    fn point() -> MonitoringPoint {
        let limits = vec![
            PollutantLimit::new("w01018", 50.0, "mg/L", Statistic::Avg).unwrap(),
            PollutantLimit::new("a21026", 35.0, "mg/m3", Statistic::ZsAvg).unwrap(),
        ];
        MonitoringPoint::new("LD130133000015", Uscc::parse("91330421739237858X").unwrap(), "DW001", limits)
            .unwrap()
    }

    fn round_trip(event: Event) -> NewEntry {
        round_trip_entry(&event, event.encode("beilun-epb"))
    }

    fn round_trip_entry(event: &Event, new: NewEntry) -> NewEntry {
        let stored = stored(9, &new);
        assert_eq!(&Event::decode(&stored).unwrap(), event);
        // Start-up skips decoding records by their first byte.
        assert_eq!(Event::is_record_payload(&new.payload), matches!(event, Event::Record(_)));
        new
    }

    fn stored(seq: u64, new: &NewEntry) -> Entry {
        Entry {
            seq,
            recorded_at_ns: 0,
            payload: new.payload.clone(),
            subject: new.subject.clone(),
            entry_hash: [0; 32],
            chain_hash: [0; 32],
            details: new.details.clone(),
        }
    }

    // The bytes below are what every existing ledger holds; if this test
    // fails, the change breaks old entries' hashes or idempotency.
    #[test]
    fn registration_bytes_are_pinned() {
        expect![[r#"
            payload 0a3b0a1239313333303432313733393233373835385812164e696e67626f2041636d6520447965696e6720436f2e1a06333330323036220543313731337a0a6265696c756e2d657062
            subject 91330421739237858X
            key 656e746572707269736500393133333034323137333932333738353858
            fingerprint 7e3c1c80df70400cb3152458094974477f05806b9e67a725aae165c3a373a2e0
        "#]]
        .assert_eq(&show(&round_trip(Event::Registration(enterprise()))));
    }

    /// The payload of a record written before committed records (every
    /// ledger's older records): it must decode to the same record for ever.
    const LEGACY_RECORD: &str = "12750a0a6265696c756e2d657062120b502d323032362d303131371a12393133333034323137333932333738353858220c70656e616c74792e66696e652a0608808795cd063080f10438024219434f442061626f7665207065726d69742061742044573030314a0f0a066f75746c6574120544573030317a0a6265696c756e2d657062";

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn a_legacy_record_keeps_decoding() {
        let legacy = NewEntry {
            payload: unhex(LEGACY_RECORD),
            subject: b"91330421739237858X".to_vec(),
            idempotency: None,
            details: Vec::new(),
        };
        round_trip_entry(&Event::Record(record()), legacy);
    }

    #[test]
    fn record_bytes_are_pinned() {
        let new = Event::encode_record_salted(&record(), "beilun-epb", &[7; 32]);
        // The key and fingerprint are a legacy record's: a record sent
        // again after the upgrade is a duplicate of the one sent before.
        expect![[r#"
            payload 4a520a12393133333034323137333932333738353858120c70656e616c74792e66696e651a0608808795cd062080f10428023a206139efc87120580d41c0b67637f84e87353b223a49676d2165d2fd480f3c16f07a0a6265696c756e2d657062
            subject 91330421739237858X
            key 7265636f7264006265696c756e2d65706200502d323032362d30313137
            fingerprint 69a94a5a7a8f1534975a5337fd9723b32f990698ce8745de320db8308856faaf
            details 0a20070707070707070707070707070707070707070707070707070707070707070712750a0a6265696c756e2d657062120b502d323032362d303131371a12393133333034323137333932333738353858220c70656e616c74792e66696e652a0608808795cd063080f10438024219434f442061626f7665207065726d69742061742044573030314a0f0a066f75746c657412054457303031
        "#]]
        .assert_eq(&format!("{}details {}\n", show(&new), hex(&new.details)));
        round_trip_entry(&Event::Record(record()), new.clone());
        // Another salt: other payload, same key and fingerprint.
        let other = Event::encode_record_salted(&record(), "beilun-epb", &[8; 32]);
        assert_ne!(other.payload, new.payload);
        assert_eq!(other.idempotency, new.idempotency);
        assert_eq!(Event::encode_record(&record(), "beilun-epb").idempotency, new.idempotency);
    }

    // A reader of the hashed bytes alone (a lender given a withheld
    // record, a mirror) learns the scoring fields and nothing else.
    #[test]
    fn a_committed_record_without_its_details_shows_the_scoring_fields_only() {
        let new = Event::encode_record_salted(&record(), "beilun-epb", &[7; 32]);
        let bare = Entry { details: Vec::new(), ..stored(5, &new) };
        let Event::Record(seen) = Event::decode(&bare).unwrap() else { panic!() };
        let full = record();
        assert_eq!(
            (seen.uscc, &seen.kind, seen.occurred_at, seen.amount_yuan, seen.refers_to),
            (full.uscc, &full.kind, full.occurred_at, full.amount_yuan, full.refers_to)
        );
        assert!(seen.source.is_empty() && seen.source_record_id.is_empty() && seen.description.is_empty());
        assert!(seen.attributes.is_empty(), "outlet is a detail: {:?}", seen.attributes);
        for secret in ["DW001", "beilun-epb\0", "P-2026-0117", "COD above"] {
            let payload = String::from_utf8_lossy(&new.payload).into_owned();
            assert!(!payload.contains(secret), "{secret:?} in the hashed bytes");
        }
    }

    #[test]
    fn details_that_do_not_open_the_commitment_are_corruption() {
        let new = Event::encode_record_salted(&record(), "beilun-epb", &[7; 32]);
        let details = pb::RecordDetails::decode(new.details.as_slice()).unwrap();
        let mut other_record = pb::Record::decode(details.record.as_slice()).unwrap();
        other_record.description = "nothing happened".into();
        let forged = [
            pb::RecordDetails { salt: vec![8; 32], ..details.clone() },
            pb::RecordDetails { salt: vec![7; 31], ..details.clone() },
            pb::RecordDetails { record: other_record.encode_to_vec(), ..details.clone() },
        ];
        for forged in forged {
            let entry = Entry { details: forged.encode_to_vec(), ..stored(5, &new) };
            assert!(
                matches!(Event::decode(&entry), Err(Error::Ledger(ledger::Error::Corruption { seq: 5, .. }))),
                "{forged:?}"
            );
        }
        // Details beside an entry that is no committed record.
        let registration = Event::Registration(enterprise()).encode("x");
        let entry = Entry { details: new.details.clone(), ..stored(6, &registration) };
        assert!(matches!(
            Event::decode(&entry),
            Err(Error::Ledger(ledger::Error::Corruption { seq: 6, .. }))
        ));
    }

    #[test]
    fn outcome_is_the_one_attribute_in_clear() {
        let mut resolution = record();
        resolution.kind = "dispute.resolved".into();
        resolution.attributes.insert("outcome".into(), "upheld".into());
        let new = Event::encode_record_salted(&resolution, "beilun-epb", &[7; 32]);
        let bare = Entry { details: Vec::new(), ..stored(5, &new) };
        let Event::Record(seen) = Event::decode(&bare).unwrap() else { panic!() };
        assert_eq!(seen.attributes, BTreeMap::from([("outcome".to_owned(), "upheld".to_owned())]));
    }

    #[test]
    fn monitoring_point_bytes_are_pinned() {
        expect![[r#"
            payload 1a6a0a0e4c4431333031333330303030313512123931333330343231373339323337383538581a054457303031221c0a067730313031381100000000000049401a046d672f4c2203417667221f0a066132313032361100000000008041401a056d672f6d3322055a734176677a0a6265696c756e2d657062
            subject 91330421739237858X
            key 706f696e74004c4431333031333330303030313500c09cb68961dd64d5c9e8f4817153f2cff39d510b8a05d2fcded29f6a55465d60
            fingerprint c09cb68961dd64d5c9e8f4817153f2cff39d510b8a05d2fcded29f6a55465d60
        "#]]
        .assert_eq(&show(&round_trip(Event::MonitoringPoint(point()))));
    }

    #[test]
    fn platform_outage_bytes_are_pinned() {
        let outage = Outage {
            from: scoring::Timestamp::parse_rfc3339("2026-06-01T00:00:00Z").unwrap(),
            to: scoring::Timestamp::parse_rfc3339("2026-06-05T00:00:00Z").unwrap(),
        };
        expect![[r#"
            payload 221f0a0d686a3231322d676174657761791206088097f3d0061a060880a388d1067a0a6265696c756e2d657062
            subject platform
            key 6f757461676500686a3231322d676174657761790018b4cbf3a3930000
            fingerprint fff336e4bab00b34a998a8fe105f61d9fa0df59da66f5d0cfa714b7f1980e9c3
        "#]]
        .assert_eq(&show(&round_trip(Event::PlatformOutage(outage))));
    }

    #[test]
    fn enterprise_update_bytes_are_pinned() {
        let update = crate::enterprise::EnterpriseUpdate {
            enterprise: enterprise(),
            status: crate::enterprise::EnterpriseStatus::Merged(Uscc::parse("11330206MB1593493A").unwrap()),
            reason: "absorbed".into(),
        };
        expect![[r#"
            payload 2a5b0a1239313333303432313733393233373835385812164e696e67626f2041636d6520447965696e6720436f2e1a06333330323036220543313731332803321231313333303230364d4231353933343933413a086162736f726265647a0a6265696c756e2d657062
            subject 91330421739237858X
            key 656e74657270726973652d75706461746500393133333034323137333932333738353858000000000000000000
            fingerprint 05fba0f6271435f2abbfab9762e733fb06df161282910bac0f63f7bba062426b
        "#]].assert_eq(&show(&round_trip(Event::EnterpriseUpdate { update, changes_seq: 0 })));
    }

    #[test]
    fn access_grant_and_revocation_bytes_are_pinned() {
        let at = |t: &str| scoring::Timestamp::parse_rfc3339(t).unwrap();
        let grant = Grant {
            uscc: Uscc::parse("91330421739237858X").unwrap(),
            lender: "ningbo-bank".into(),
            purpose: "loan_application".into(),
            covers: vec![crate::consent::Cover::Details, crate::consent::Cover::History],
            starts_at: at("2026-06-01T00:00:00Z"),
            expires_at: at("2026-12-01T00:00:00Z"),
        };
        expect![[r#"
            payload 3a550a12393133333034323137333932333738353858120b6e696e67626f2d62616e6b1a106c6f616e5f6170706c69636174696f6e220764657461696c732207686973746f72792a06088097f3d006320608809cb8d8067a0a6265696c756e2d657062
            subject 91330421739237858X
            key 6772616e740039313333303432313733393233373835385800986405be4ce8246ad1453dd697168e729fc5782d7d7383e221105d1f0c0fe63f
            fingerprint 986405be4ce8246ad1453dd697168e729fc5782d7d7383e221105d1f0c0fe63f
        "#]].assert_eq(&show(&round_trip(Event::AccessGrant(grant))));
        let revocation =
            Event::AccessRevocation { uscc: Uscc::parse("91330421739237858X").unwrap(), grant_seq: 7 };
        expect![[r#"
            payload 42160a1239313333303432313733393233373835385810077a0a6265696c756e2d657062
            subject 91330421739237858X
            key 6772616e742d7265766f6b656400393133333034323137333932333738353858000000000000000007
            fingerprint 096ca6684c767a731e085995e6ac9c64fcba0b7e840ea8f62466149f5870e89a
        "#]]
        .assert_eq(&show(&round_trip(revocation)));
    }

    // Points registered before keyed verifiers hold an unkeyed hash (field
    // 6): such an entry must decode and encode again to the very bytes
    // stored, or its hash and idempotency key would break.
    #[test]
    fn a_legacy_monitoring_point_keeps_its_stored_bytes() {
        let hash = hj212::PasswordHash::of("LD130133000015", "s3cret").unwrap();
        let stored = pb::LedgerEvent {
            event: Some(pb::ledger_event::Event::MonitoringPoint(pb::MonitoringPoint {
                password_hash: hash.to_hex(),
                ..to_proto::monitoring_point(&point())
            })),
            submitted_by: "beilun-epb".into(),
        }
        .encode_to_vec();
        let entry = Entry {
            seq: 4,
            recorded_at_ns: 0,
            payload: stored.clone(),
            subject: b"91330421739237858X".to_vec(),
            entry_hash: [0; 32],
            chain_hash: [0; 32],
            details: Vec::new(),
        };
        let decoded = Event::decode(&entry).unwrap();
        let Event::MonitoringPoint(p) = &decoded else { panic!("{decoded:?}") };
        assert_eq!(p.credential(), Some(&hj212::Credential::Legacy(hash)));
        assert_eq!(decoded.encode("beilun-epb").payload, stored);
    }

    // A keyed credential puts only its random id in the entry: nothing
    // derived from the password, so no ledger reader can search it offline.
    #[test]
    fn a_keyed_monitoring_point_holds_no_password_material() {
        let id = hj212::CredentialId::from_hex("00112233445566778899aabbccddeeff").unwrap();
        let new = round_trip(Event::MonitoringPoint(point().with_credential(hj212::Credential::Keyed(id))));
        expect![[r#"
            payload 1a8c010a0e4c4431333031333330303030313512123931333330343231373339323337383538581a054457303031221c0a067730313031381100000000000049401a046d672f4c2203417667221f0a066132313032361100000000008041401a056d672f6d3322055a734176673a2030303131323233333434353536363737383839396161626263636464656566667a0a6265696c756e2d657062
            subject 91330421739237858X
            key 706f696e74004c4431333031333330303030313500831a75bf12763123da8b6ccf69cb3fb907822afe879409e12cee5751d302d89e
            fingerprint 831a75bf12763123da8b6ccf69cb3fb907822afe879409e12cee5751d302d89e
        "#]].assert_eq(&show(&new));
        let legacy = hj212::PasswordHash::of("LD130133000015", "s3cret").unwrap().to_hex();
        assert!(!show(&new).contains(&hex(legacy.as_bytes())));
    }

    #[test]
    fn undecodable_payloads_are_corruption() {
        for payload in [vec![0xff, 0xff], Vec::new()] {
            let entry = Entry {
                seq: 3,
                recorded_at_ns: 0,
                payload,
                subject: Vec::new(),
                entry_hash: [0; 32],
                chain_hash: [0; 32],
                details: Vec::new(),
            };
            assert!(matches!(
                Event::decode(&entry),
                Err(Error::Ledger(ledger::Error::Corruption { seq: 3, .. }))
            ));
        }
    }

    #[test]
    fn index_entries_decode_as_index_events_and_never_as_ledger_events() {
        // Every scan of the ledger meets one at the end of each checkpoint.
        let commitment = tlog::index::Commitment { size: 41, subjects: 7, root: [3; 32] };
        let new = round_trip(Event::Index(commitment));
        assert!(new.subject.is_empty() && new.idempotency.is_none());
        // Every event the service encodes starts with another byte.
        for event in
            [Event::Registration(enterprise()), Event::Record(record()), Event::MonitoringPoint(point())]
        {
            assert!(!tlog::index::is_index_payload(&event.encode("x").payload));
        }
        let mut damaged = new.payload.clone();
        damaged.pop();
        let entry = Entry {
            seq: 41,
            recorded_at_ns: 0,
            payload: damaged,
            subject: Vec::new(),
            entry_hash: [0; 32],
            chain_hash: [0; 32],
            details: Vec::new(),
        };
        assert!(matches!(
            Event::decode(&entry),
            Err(Error::Ledger(ledger::Error::Corruption { seq: 41, .. }))
        ));
    }
}
