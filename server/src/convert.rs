//! Conversions between the generated protobuf types and domain types.
//! Every crossing of the gRPC boundary goes through a function here.

pub mod from_proto {
    use ecocode_proto::v1 as pb;
    use hj212::{
        Credential, CredentialId, DevicePassword, MonitoringPoint, Outage, PasswordHash, PointRegistration,
        PollutantLimit, Statistic,
    };
    use scoring::{Enterprise, Timestamp, ValidationError};

    use crate::consent::{Cover, Grant};
    use crate::enterprise::{EnterpriseStatus, EnterpriseUpdate, UpdateRequest};

    // The stored scoring inputs are read by the offline verifier too: one
    // definition, in the `evidence` crate.
    pub use evidence::convert::{enterprise, optional_timestamp, record, timestamp};

    /// A change as a regulator asks for it: empty fields are unchanged.
    pub fn enterprise_update_request(u: &pb::EnterpriseUpdate) -> Result<UpdateRequest, ValidationError> {
        let given = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Ok(UpdateRequest {
            uscc: scoring::Uscc::parse(&u.uscc)?,
            name: given(&u.name),
            region_code: given(&u.region_code),
            industry_code: given(&u.industry_code),
            status: match u.status() {
                pb::EnterpriseStatus::Unspecified => None,
                other => Some(status(other, &u.merged_into)?),
            },
            reason: u.reason.clone(),
        })
    }

    fn status(s: pb::EnterpriseStatus, merged_into: &str) -> Result<EnterpriseStatus, ValidationError> {
        match (s, merged_into) {
            (pb::EnterpriseStatus::Merged, into) => {
                let into = scoring::Uscc::parse(into).map_err(|e| {
                    ValidationError::new(
                        "merged_into",
                        format!("MERGED needs the successor's USCC: {}", e.rule),
                    )
                })?;
                Ok(EnterpriseStatus::Merged(into))
            }
            (_, into) if !into.is_empty() => {
                Err(ValidationError::new("merged_into", "is only for status MERGED"))
            }
            (pb::EnterpriseStatus::Closed, _) => Ok(EnterpriseStatus::Closed),
            _ => Ok(EnterpriseStatus::Active),
        }
    }

    /// A change as stored: every field holds the value from then on.
    pub fn stored_enterprise_update(u: &pb::EnterpriseUpdate) -> Result<EnterpriseUpdate, ValidationError> {
        Ok(EnterpriseUpdate {
            enterprise: Enterprise::new(&u.uscc, &u.name, &u.region_code, &u.industry_code)?,
            status: status(u.status(), &u.merged_into)?,
            reason: u.reason.clone(),
        })
    }

    /// A grant as requested: checked against the service's clock `now`.
    pub fn access_grant(g: &pb::AccessGrant, now: Timestamp) -> Result<Grant, ValidationError> {
        let uscc = scoring::Uscc::parse(&g.uscc)?;
        let starts_at = optional_timestamp(g.starts_at.as_ref(), "starts_at")?;
        let expires_at = optional_timestamp(g.expires_at.as_ref(), "expires_at")?;
        Grant::new(uscc, &g.lender, &g.purpose, &g.covers, starts_at, expires_at, now)
    }

    /// A grant as stored: only its shape is checked again (a stored grant
    /// may have expired since).
    pub fn stored_access_grant(g: &pb::AccessGrant) -> Result<Grant, ValidationError> {
        let required = |t: Option<&prost_types::Timestamp>, field: &str| {
            optional_timestamp(t, field)?.ok_or_else(|| ValidationError::new(field, "is required"))
        };
        let starts_at = required(g.starts_at.as_ref(), "starts_at")?;
        let expires_at = required(g.expires_at.as_ref(), "expires_at")?;
        let covers = g.covers.iter().map(|c| Cover::parse(c)).collect::<Result<Vec<_>, _>>()?;
        Ok(Grant {
            uscc: scoring::Uscc::parse(&g.uscc)?,
            lender: g.lender.clone(),
            purpose: g.purpose.clone(),
            covers,
            starts_at,
            expires_at,
        })
    }

    pub fn platform_outage(o: &pb::PlatformOutage) -> Result<Outage, ValidationError> {
        if o.component != super::to_proto::OUTAGE_COMPONENT {
            return Err(ValidationError::new("component", format!("unknown component {:?}", o.component)));
        }
        let required = |t: Option<&prost_types::Timestamp>, field: &str| {
            optional_timestamp(t, field)?.ok_or_else(|| ValidationError::new(field, "is required"))
        };
        let from = required(o.from.as_ref(), "from")?;
        let to = required(o.to.as_ref(), "to")?;
        if to < from {
            return Err(ValidationError::new("to", "must not be before from"));
        }
        Ok(Outage { from, to })
    }

    /// A monitoring point as a client registers it: the password is
    /// required (the service keeps only its keyed verifier, outside the
    /// ledger), and a client cannot set a credential itself.
    pub fn monitoring_point_registration(
        p: &pb::MonitoringPoint,
    ) -> Result<PointRegistration, ValidationError> {
        if !p.password_hash.is_empty() {
            return Err(ValidationError::new("password_hash", "is set by the server; send password"));
        }
        if !p.credential_id.is_empty() {
            return Err(ValidationError::new("credential_id", "is set by the server; send password"));
        }
        if p.password.is_empty() {
            return Err(ValidationError::new(
                "password",
                "is required: the device's HJ 212 PW, 1 to 32 printable ASCII characters",
            ));
        }
        let password = DevicePassword::new(&p.password)?;
        Ok(PointRegistration { point: monitoring_point(p)?, password })
    }

    /// A monitoring point as stored; errors name the field, e.g.
    /// `limits[1].limit`. A plain `password` is ignored: only registration
    /// reads it.
    pub fn monitoring_point(p: &pb::MonitoringPoint) -> Result<MonitoringPoint, ValidationError> {
        // Bounded before any per-limit work.
        if p.limits.len() > hj212::MAX_LIMITS {
            return Err(ValidationError::new(
                "limits",
                format!(
                    "at most {} pollutants per monitoring point, got {}",
                    hj212::MAX_LIMITS,
                    p.limits.len()
                ),
            ));
        }
        let uscc = scoring::Uscc::parse(&p.uscc)?;
        let limits = p
            .limits
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let statistic = match l.statistic.as_str() {
                    "" | "Avg" => Statistic::Avg,
                    "ZsAvg" => Statistic::ZsAvg,
                    other => {
                        return Err(ValidationError::new(
                            format!("limits[{i}].statistic"),
                            format!("must be Avg or ZsAvg, got {}", scoring::quoted(other)),
                        ));
                    }
                };
                PollutantLimit::new(&l.pollutant, l.limit, &l.unit, statistic)
                    .map_err(|e| ValidationError::new(format!("limits[{i}].{}", e.field), e.rule))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let point = MonitoringPoint::new(&p.mn, uscc, &p.outlet, limits)?;
        Ok(match (p.password_hash.as_str(), p.credential_id.as_str()) {
            ("", "") => point,
            (hex, "") => point.with_credential(Credential::Legacy(PasswordHash::from_hex(hex)?)),
            ("", id) => point.with_credential(Credential::Keyed(CredentialId::from_hex(id)?)),
            _ => return Err(ValidationError::new("credential_id", "must not be set with password_hash")),
        })
    }

    pub fn codes(codes: &[i32]) -> Result<Vec<scoring::Code>, ValidationError> {
        codes
            .iter()
            .map(|&c| match pb::EcoCode::try_from(c) {
                Ok(pb::EcoCode::Green) => Ok(scoring::Code::Green),
                Ok(pb::EcoCode::Yellow) => Ok(scoring::Code::Yellow),
                Ok(pb::EcoCode::Red) => Ok(scoring::Code::Red),
                _ => Err(ValidationError::new("codes", format!("{c} is not GREEN, YELLOW or RED"))),
            })
            .collect()
    }

    pub fn mee_levels(levels: &[i32]) -> Result<Vec<scoring::MeeLevel>, ValidationError> {
        levels
            .iter()
            .map(|&l| match pb::MeeLevel::try_from(l) {
                Ok(pb::MeeLevel::Green) => Ok(scoring::MeeLevel::Green),
                Ok(pb::MeeLevel::Blue) => Ok(scoring::MeeLevel::Blue),
                Ok(pb::MeeLevel::Yellow) => Ok(scoring::MeeLevel::Yellow),
                Ok(pb::MeeLevel::Red) => Ok(scoring::MeeLevel::Red),
                _ => Err(ValidationError::new(
                    "mee_levels",
                    format!("{l} is not MEE_LEVEL_GREEN, MEE_LEVEL_BLUE, MEE_LEVEL_YELLOW or MEE_LEVEL_RED"),
                )),
            })
            .collect()
    }
}

pub mod to_proto {
    use ecocode_proto::v1 as pb;
    use hj212::{Credential, MonitoringPoint, Outage};
    use scoring::{Code, Enterprise, Evaluation, Grade, MeeLevel, Record, Timestamp};

    use crate::enterprise::{EnterpriseStatus, EnterpriseUpdate};

    pub fn timestamp(t: Timestamp) -> prost_types::Timestamp {
        let (seconds, nanos) = t.to_unix();
        prost_types::Timestamp { seconds, nanos }
    }

    pub fn enterprise(e: &Enterprise) -> pb::Enterprise {
        pb::Enterprise {
            uscc: e.uscc.to_string(),
            name: e.name.clone(),
            region_code: e.region_code.clone(),
            industry_code: e.industry_code.clone(),
        }
    }

    pub fn record(r: &Record) -> pb::Record {
        pb::Record {
            source: r.source.clone(),
            source_record_id: r.source_record_id.clone(),
            uscc: r.uscc.to_string(),
            kind: r.kind.clone(),
            occurred_at: Some(timestamp(r.occurred_at)),
            amount_yuan: r.amount_yuan,
            refers_to_seq: r.refers_to.map_or(0, |s| s.0),
            description: r.description.clone(),
            attributes: r.attributes.clone(),
        }
    }

    pub fn enterprise_update(u: &EnterpriseUpdate) -> pb::EnterpriseUpdate {
        let (status, merged_into) = status(&u.status);
        let e = &u.enterprise;
        pb::EnterpriseUpdate {
            uscc: e.uscc.to_string(),
            name: e.name.clone(),
            region_code: e.region_code.clone(),
            industry_code: e.industry_code.clone(),
            status: status as i32,
            merged_into,
            reason: u.reason.clone(),
        }
    }

    pub fn status(s: &EnterpriseStatus) -> (pb::EnterpriseStatus, String) {
        match s {
            EnterpriseStatus::Active => (pb::EnterpriseStatus::Active, String::new()),
            EnterpriseStatus::Closed => (pb::EnterpriseStatus::Closed, String::new()),
            EnterpriseStatus::Merged(into) => (pb::EnterpriseStatus::Merged, into.to_string()),
        }
    }

    /// `GetEnterpriseHistory`: each state with the seq that set it.
    pub fn enterprise_history(versions: &[(u64, EnterpriseUpdate)]) -> pb::EnterpriseHistory {
        pb::EnterpriseHistory {
            versions: versions
                .iter()
                .map(|(seq, state)| pb::EnterpriseVersion {
                    seq: *seq,
                    state: Some(enterprise_update(state)),
                })
                .collect(),
        }
    }

    pub fn gateway_figures(f: &crate::views::GatewayFigures) -> pb::GatewayFigures {
        let totals = f.totals.map(|t| gateway_totals(&t)).unwrap_or_default();
        let devices = f
            .devices
            .iter()
            .map(|(device, d)| pb::DeviceFigures {
                device: device.clone(),
                packets: d.packets,
                acknowledged: d.acknowledged,
                rejected: d.rejected.clone(),
                deviations: d.deviations.clone(),
                last_seen: d.last_seen.map(timestamp),
                legacy_verifier: d.legacy_verifier,
            })
            .collect();
        pb::GatewayFigures { totals, devices }
    }

    fn gateway_totals(t: &hj212::GatewayCounts) -> std::collections::BTreeMap<String, u64> {
        [
            ("connections_accepted", t.connections_accepted),
            ("connections_refused", t.connections_refused),
            ("connections_refused_per_peer", t.connections_refused_per_peer),
            ("connections_evicted_unauthenticated", t.connections_evicted_unauthenticated),
            ("connections_timed_out", t.connections_timed_out),
            ("connections_dropped_junk", t.connections_dropped_junk),
            ("packets_ok", t.packets_ok),
            ("bad_crc", t.bad_crc),
            ("bad_length", t.bad_length),
            ("malformed", t.malformed),
            ("unknown_device", t.unknown_device),
            ("wrong_password", t.wrong_password),
            ("locked_out", t.locked_out),
            ("lockouts", t.lockouts),
            ("disconnected_wrong_password", t.disconnected_wrong_password),
            ("legacy_verifier", t.legacy_verifier),
            ("alerts_suppressed", t.alerts_suppressed),
            ("split_incomplete", t.split_incomplete),
            ("split_refused", t.split_refused),
            ("acks_sent", t.acks_sent),
            ("values_stored", t.values_stored),
            ("values_not_counted", t.values_not_counted),
            ("records_emitted", t.records_emitted),
            ("records_refused", t.records_refused),
            ("append_failures", t.append_failures),
            ("garbage_bytes", t.garbage_bytes),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// The component of every outage so far: the HJ 212 gateway.
    pub const OUTAGE_COMPONENT: &str = "hj212-gateway";

    pub fn platform_outage(o: &Outage) -> pb::PlatformOutage {
        pb::PlatformOutage {
            component: OUTAGE_COMPONENT.to_owned(),
            from: Some(timestamp(o.from)),
            to: Some(timestamp(o.to)),
        }
    }

    pub fn monitoring_point(p: &MonitoringPoint) -> pb::MonitoringPoint {
        pb::MonitoringPoint {
            mn: p.mn().to_owned(),
            uscc: p.uscc().to_string(),
            outlet: p.outlet().to_owned(),
            limits: p
                .limits()
                .iter()
                .map(|l| pb::PollutantLimit {
                    pollutant: l.pollutant().to_owned(),
                    limit: l.limit(),
                    unit: l.unit().to_owned(),
                    statistic: l.statistic().as_str().to_owned(),
                })
                .collect(),
            password: String::new(),
            // A legacy entry keeps its hash, so its bytes stay as stored;
            // nothing password-derived is written for a keyed credential.
            password_hash: match p.credential() {
                Some(Credential::Legacy(hash)) => hash.to_hex(),
                _ => String::new(),
            },
            credential_id: match p.credential() {
                Some(Credential::Keyed(id)) => id.to_hex(),
                _ => String::new(),
            },
        }
    }

    pub fn receipt(r: &ledger::Receipt) -> pb::Receipt {
        pb::Receipt {
            seq: r.seq,
            entry_hash: r.entry_hash.to_vec(),
            chain_hash: r.chain_hash.to_vec(),
            recorded_at: Some(timestamp(Timestamp::from_unix_nanos(r.recorded_at_ns))),
            duplicate: r.duplicate,
        }
    }

    pub fn entry(e: &ledger::Entry) -> pb::Entry {
        pb::Entry {
            seq: e.seq,
            recorded_at: Some(timestamp(Timestamp::from_unix_nanos(e.recorded_at_ns))),
            payload: e.payload.clone(),
            entry_hash: e.entry_hash.to_vec(),
            chain_hash: e.chain_hash.to_vec(),
            withheld: None,
            details: e.details.clone(),
        }
    }

    /// An entry as the reader receives it (whole or withheld).
    pub fn shown_entry(e: &ledger::Entry, withheld: Option<&crate::views::Withheld>) -> pb::Entry {
        pb::Entry { withheld: withheld.map(self::withheld), ..entry(e) }
    }

    pub fn withheld(w: &crate::views::Withheld) -> pb::Withheld {
        pb::Withheld {
            seq: w.seq.0,
            publicity_class: w.class.as_str().to_owned(),
            why: w.why.as_str().to_owned(),
            since: Some(timestamp(w.since)),
            entry_hash: w.entry_hash.to_vec(),
        }
    }

    pub fn checkpoint(c: &ledger::Checkpoint) -> pb::Checkpoint {
        pb::Checkpoint {
            tree_size: c.tree_size,
            root_hash: c.root.to_vec(),
            chain_hash: c.chain.to_vec(),
            timestamp: Some(timestamp(Timestamp::from_unix_nanos(c.timestamp_ns))),
            signed_note: c.note.clone(),
            public_key: c.public_key.to_vec(),
        }
    }

    pub fn inquiry(i: &inquiries::Inquiry) -> pb::Inquiry {
        pb::Inquiry {
            uscc: i.uscc.clone(),
            principal: i.principal.clone(),
            role: i.role.clone(),
            method: i.method.clone(),
            purpose: i.purpose.clone(),
            at: Some(timestamp(Timestamp::from_unix_nanos(i.at_ns))),
            grant_seq: i.grant_seq.unwrap_or(0),
        }
    }

    /// The canonical form of a stored grant (its bytes are hashed).
    pub fn access_grant(g: &crate::consent::Grant) -> pb::AccessGrant {
        pb::AccessGrant {
            uscc: g.uscc.to_string(),
            lender: g.lender.clone(),
            purpose: g.purpose.clone(),
            covers: g.covers.iter().map(|c| c.as_str().to_owned()).collect(),
            starts_at: Some(timestamp(g.starts_at)),
            expires_at: Some(timestamp(g.expires_at)),
        }
    }

    pub fn grant(g: &crate::consent::GrantState, now: Timestamp) -> pb::Grant {
        pb::Grant {
            seq: g.seq,
            grant: Some(access_grant(&g.grant)),
            status: g.status(now).as_str().to_owned(),
            revoked_seq: g.revoked.map_or(0, |(seq, _)| seq),
            revoked_at: g.revoked.map(|(_, at)| timestamp(at)),
        }
    }

    pub fn code(c: Code) -> pb::EcoCode {
        match c {
            Code::Green => pb::EcoCode::Green,
            Code::Yellow => pb::EcoCode::Yellow,
            Code::Red => pb::EcoCode::Red,
        }
    }

    pub fn grade(g: Grade) -> pb::CreditGrade {
        match g {
            Grade::Integrity => pb::CreditGrade::Integrity,
            Grade::Good => pb::CreditGrade::Good,
            Grade::Warning => pb::CreditGrade::Warning,
            Grade::Poor => pb::CreditGrade::Poor,
        }
    }

    pub fn mee_level(l: MeeLevel) -> pb::MeeLevel {
        match l {
            MeeLevel::Green => pb::MeeLevel::Green,
            MeeLevel::Blue => pb::MeeLevel::Blue,
            MeeLevel::Yellow => pb::MeeLevel::Yellow,
            MeeLevel::Red => pb::MeeLevel::Red,
        }
    }

    /// Most reason lines in one `Score`; more are summed into one line, so
    /// an enterprise with 95 000 records still answers a normal message and
    /// the reasons still add up.
    pub const MAX_REASONS: usize = 200;

    /// A score: the model's evaluation plus the enterprise and the ledger
    /// prefix it was computed from.
    pub fn score(s: &crate::views::ScoreView) -> pb::Score {
        let e: &Evaluation = &s.evaluation;
        let mut reasons: Vec<pb::Reason> = e
            .reasons
            .iter()
            .map(|r| pb::Reason {
                kind: r.kind.clone(),
                points: r.points,
                seq: r.seq.0,
                description: r.description.clone(),
                expires_at: r.expires_at.map(timestamp),
                withheld: s
                    .withheld
                    .iter()
                    .find(|w| w.seq == r.seq && r.kind == crate::views::WITHHELD_KIND)
                    .map(withheld),
            })
            .collect();
        if reasons.len() > MAX_REASONS {
            // Keep the weightiest lines; the rest become one summary line.
            reasons.sort_by_key(|r| std::cmp::Reverse(r.points.unsigned_abs()));
            let rest = reasons.split_off(MAX_REASONS - 1);
            reasons.push(pb::Reason {
                kind: "summary".into(),
                points: rest.iter().map(|r| r.points).sum(),
                seq: 0,
                description: format!(
                    "{} more reasons of smaller weight; Ledger.ListEntries holds every record",
                    rest.len()
                ),
                expires_at: None,
                withheld: None,
            });
        }
        pb::Score {
            uscc: s.enterprise.uscc.to_string(),
            name: s.enterprise.name.clone(),
            points: e.points,
            grade: grade(e.grade).into(),
            code: code(e.code).into(),
            veto: e.veto,
            disputed: e.disputed,
            reasons,
            as_of: Some(timestamp(e.as_of)),
            tree_size: s.tree_size,
            root_hash: s.root.to_vec(),
            model_version: e.model_version.clone(),
            rectification_pending: e.rectification_pending.iter().map(|s| s.0).collect(),
            region_code: s.enterprise.region_code.clone(),
            industry_code: s.enterprise.industry_code.clone(),
            mee_level: mee_level(e.mee_level).into(),
            model_entry_hash: s.model_entry.map(|h| h.to_vec()).unwrap_or_default(),
            index_tree_size: s.index.map(|(size, _)| size).unwrap_or_default(),
            index_root: s.index.map(|(_, root)| root.to_vec()).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use ecocode_proto::v1 as pb;
    use proptest::prelude::*;
    use prost::Message;

    use super::from_proto;

    proptest! {
        // Any bytes a client sends as a Record either fail to decode or
        // convert to a record or a validation error: never a panic.
        #[test]
        fn arbitrary_bytes_never_panic_the_record_path(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(record) = pb::Record::decode(bytes.as_slice()) {
                let _ = from_proto::record(&record);
            }
            if let Ok(point) = pb::MonitoringPoint::decode(bytes.as_slice()) {
                let _ = from_proto::monitoring_point(&point);
            }
            if let Ok(enterprise) = pb::Enterprise::decode(bytes.as_slice()) {
                let _ = from_proto::enterprise(&enterprise);
            }
        }

        // Every field of a record, arbitrary text: a validation error names
        // a field, and a long input is never echoed whole.
        #[test]
        fn validators_name_the_field_and_do_not_echo_long_input(
            source in ".{0,80}", id in ".{0,300}", uscc in ".{0,40}", kind in ".{0,40}",
            description in ".{0,3000}", seconds in any::<i64>(), nanos in any::<i32>(), amount in any::<i64>(),
        ) {
            let record = pb::Record {
                source, source_record_id: id, uscc, kind, description,
                occurred_at: Some(prost_types::Timestamp { seconds, nanos }),
                amount_yuan: amount, refers_to_seq: 0, attributes: Default::default(),
            };
            if let Err(e) = from_proto::record(&record) {
                prop_assert!(!e.field.is_empty());
                prop_assert!(e.to_string().len() < 1_000, "{}", e);
            }
        }
    }
}
