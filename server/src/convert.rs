//! Conversions between the generated protobuf types and domain types.
//! Every crossing of the gRPC boundary goes through a function here.

pub mod from_proto {
    use ecocode_proto::v1 as pb;
    use hj212::{MonitoringPoint, PollutantLimit, Statistic};
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

    /// A monitoring point; errors name the field, e.g. `limits[1].limit`.
    pub fn monitoring_point(p: &pb::MonitoringPoint) -> Result<MonitoringPoint, ValidationError> {
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
        MonitoringPoint::new(&p.mn, uscc, &p.outlet, limits)
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
}

pub mod to_proto {
    use ecocode_proto::v1 as pb;
    use hj212::MonitoringPoint;
    use scoring::{Code, Enterprise, Evaluation, Grade, Record, Timestamp};

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

    /// A score: the model's evaluation plus the enterprise and the ledger
    /// prefix it was computed from.
    pub fn score(s: &crate::views::ScoreView) -> pb::Score {
        let e: &Evaluation = &s.evaluation;
        pb::Score {
            uscc: s.enterprise.uscc.to_string(),
            name: s.enterprise.name.clone(),
            points: e.points,
            grade: grade(e.grade).into(),
            code: code(e.code).into(),
            veto: e.veto,
            disputed: e.disputed,
            reasons: e
                .reasons
                .iter()
                .map(|r| pb::Reason {
                    kind: r.kind.clone(),
                    points: r.points,
                    seq: r.seq.0,
                    description: r.description.clone(),
                    expires_at: r.expires_at.map(timestamp),
                })
                .collect(),
            as_of: Some(timestamp(e.as_of)),
            tree_size: s.tree_size,
            root_hash: s.root.to_vec(),
            model_version: e.model_version.clone(),
            rectification_pending: e.rectification_pending.iter().map(|s| s.0).collect(),
            region_code: s.enterprise.region_code.clone(),
            industry_code: s.enterprise.industry_code.clone(),
        }
    }
}
