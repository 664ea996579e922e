//! `MonitoringPoint`: a registered outlet with its data logger (MN), its
//! enterprise and the permitted limit of each monitored pollutant.

use std::fmt;

use scoring::{Timestamp, Uscc, ValidationError};

use super::credentials::Credential;
use super::packet::{check_mn, check_password, check_pollutant_code};

/// The legacy stored form of a device's password, in ledger entries written
/// before keyed verifiers ([`crate::Credentials`]); never written now.
///
/// An unkeyed BLAKE3 key derivation over the MN and the password: whoever
/// can read such an entry can search the password offline, so points that
/// still carry one are flagged (`legacy_verifier`) and should be registered
/// again with a new password (docs/hj212.md).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PasswordHash(blake3::Hash);

const PASSWORD_CONTEXT: &str = "ecocode 2026 hj212 device password v1";

impl PasswordHash {
    /// Hashes `password` for device `mn`, checking it is a valid HJ 212 `PW`.
    pub fn of(mn: &str, password: &str) -> Result<PasswordHash, ValidationError> {
        check_password(password).map_err(|rule| {
            ValidationError::new("password", format!("{rule}, got {} characters", password.len()))
        })?;
        Ok(Self::derive(mn, password))
    }

    /// The legacy hash of `password` for `mn` (compared in constant time).
    pub(crate) fn derive(mn: &str, password: &str) -> PasswordHash {
        let mut hasher = blake3::Hasher::new_derive_key(PASSWORD_CONTEXT);
        hasher.update(&(mn.len() as u64).to_le_bytes()).update(mn.as_bytes()).update(password.as_bytes());
        PasswordHash(hasher.finalize())
    }

    pub fn from_hex(hex: &str) -> Result<PasswordHash, ValidationError> {
        blake3::Hash::from_hex(hex)
            .map(PasswordHash)
            .map_err(|_| ValidationError::new("password_hash", "must be 64 hex digits"))
    }

    pub fn to_hex(&self) -> String {
        self.0.to_hex().to_string()
    }
}

/// Which value a limit is judged against.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Statistic {
    /// The measured average (`-Avg`), e.g. for wastewater.
    Avg,
    /// The converted (折算) average (`-ZsAvg`), e.g. for flue gas, whose
    /// limits are set at a reference oxygen content.
    ZsAvg,
}

impl Statistic {
    pub fn as_str(self) -> &'static str {
        match self {
            Statistic::Avg => "Avg",
            Statistic::ZsAvg => "ZsAvg",
        }
    }
}

impl fmt::Display for Statistic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The permitted daily mean of one pollutant at one outlet.
#[derive(Clone, PartialEq, Debug)]
pub struct PollutantLimit {
    pollutant: String,
    limit: f64,
    unit: String,
    statistic: Statistic,
}

impl PollutantLimit {
    pub fn new(
        pollutant: &str,
        limit: f64,
        unit: &str,
        statistic: Statistic,
    ) -> Result<PollutantLimit, ValidationError> {
        check_pollutant_code(pollutant)
            .map_err(|rule| ValidationError::new("pollutant", format!("{rule}, got {pollutant:?}")))?;
        if !(limit.is_finite() && limit > 0.0) {
            return Err(ValidationError::new(
                "limit",
                format!("must be a finite number above 0, got {limit}"),
            ));
        }
        if unit.len() > 16 || !unit.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ValidationError::new(
                "unit",
                format!("must be at most 16 printable ASCII characters, got {unit:?}"),
            ));
        }
        Ok(PollutantLimit { pollutant: pollutant.to_owned(), limit, unit: unit.to_owned(), statistic })
    }

    pub fn pollutant(&self) -> &str {
        &self.pollutant
    }

    pub fn limit(&self) -> f64 {
        self.limit
    }

    pub fn unit(&self) -> &str {
        &self.unit
    }

    pub fn statistic(&self) -> Statistic {
        self.statistic
    }
}

/// Most pollutant limits one monitoring point has (HJ 212 codes a few dozen
/// pollutants per outlet); more is refused before any other work.
pub const MAX_LIMITS: usize = 64;

/// A registered outlet: which enterprise a device's data belongs to and
/// which pollutants are judged there.
#[derive(Clone, PartialEq, Debug)]
pub struct MonitoringPoint {
    mn: String,
    uscc: Uscc,
    outlet: String,
    limits: Vec<PollutantLimit>,
    /// How its device proves itself; `None` for points registered before
    /// passwords existed, whose packets are never recorded.
    credential: Option<Credential>,
    /// When the service first registered this MN: missing days count from
    /// the next local day whether or not the device ever connects. Not part
    /// of the stored event (the directory knows it from the ledger).
    registered_at: Option<Timestamp>,
}

impl MonitoringPoint {
    pub fn new(
        mn: &str,
        uscc: Uscc,
        outlet: &str,
        limits: Vec<PollutantLimit>,
    ) -> Result<MonitoringPoint, ValidationError> {
        check_mn(mn).map_err(|rule| ValidationError::new("mn", format!("{rule}, got {mn:?}")))?;
        if outlet.trim().is_empty() || outlet.chars().count() > 64 || outlet.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "outlet",
                format!("must be 1 to 64 characters without control characters, got {outlet:?}"),
            ));
        }
        if limits.len() > MAX_LIMITS {
            return Err(ValidationError::new(
                "limits",
                format!("at most {MAX_LIMITS} pollutants per monitoring point, got {}", limits.len()),
            ));
        }
        let mut seen = std::collections::HashSet::with_capacity(limits.len());
        for limit in &limits {
            if !seen.insert(limit.pollutant.as_str()) {
                return Err(ValidationError::new(
                    "limits",
                    format!("pollutant {} is listed twice", limit.pollutant),
                ));
            }
        }
        Ok(MonitoringPoint {
            mn: mn.to_owned(),
            uscc,
            outlet: outlet.to_owned(),
            limits,
            credential: None,
            registered_at: None,
        })
    }

    /// The same point, whose device proves itself with `credential`.
    pub fn with_credential(self, credential: Credential) -> MonitoringPoint {
        MonitoringPoint { credential: Some(credential), ..self }
    }

    /// Whether `other` registers the same device, enterprise, outlet and
    /// limits (credentials and registration time aside).
    pub fn same_registration(&self, other: &MonitoringPoint) -> bool {
        (&self.mn, &self.uscc, &self.outlet, &self.limits)
            == (&other.mn, &other.uscc, &other.outlet, &other.limits)
    }

    /// The same point, first registered at `at`.
    pub fn registered_at(self, at: Timestamp) -> MonitoringPoint {
        MonitoringPoint { registered_at: Some(at), ..self }
    }

    pub fn first_registered_at(&self) -> Option<Timestamp> {
        self.registered_at
    }

    /// The first local day whose data the device owes: the day after its
    /// registration (a partial day could never have enough valid hours).
    pub fn owes_data_from(&self) -> Option<super::time::LocalDay> {
        self.registered_at.and_then(|at| super::time::LocalDay::containing(at).next())
    }

    pub fn credential(&self) -> Option<&Credential> {
        self.credential.as_ref()
    }

    pub fn mn(&self) -> &str {
        &self.mn
    }

    pub fn uscc(&self) -> &Uscc {
        &self.uscc
    }

    /// The outlet's id in the discharge permit, e.g. `DW001`.
    pub fn outlet(&self) -> &str {
        &self.outlet
    }

    pub fn limits(&self) -> &[PollutantLimit] {
        &self.limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(mn: &str, outlet: &str, limits: &[(&str, f64, &str)], expect: Result<(), &str>) {
        let uscc = Uscc::parse("91330421739237858X").unwrap();
        let got = limits
            .iter()
            .map(|&(p, l, u)| PollutantLimit::new(p, l, u, Statistic::Avg))
            .collect::<Result<Vec<_>, _>>()
            .and_then(|limits| MonitoringPoint::new(mn, uscc, outlet, limits))
            .map(|_| ())
            .map_err(|e| e.to_string());
        match (got, expect) {
            (Ok(()), Ok(())) => {}
            (Err(msg), Err(prefix)) => assert!(msg.starts_with(prefix), "{msg:?} vs {prefix:?}"),
            (got, expect) => panic!("{mn:?}: got {got:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn the_legacy_hash_differs_per_device_and_round_trips() {
        let hash = PasswordHash::of("LD13", "123456").unwrap();
        // Another device with the same password has another hash.
        assert_ne!(PasswordHash::of("LD14", "123456").unwrap(), hash);
        assert_eq!(PasswordHash::from_hex(&hash.to_hex()).unwrap(), hash);
        assert!(
            PasswordHash::of("LD13", "").unwrap_err().to_string().starts_with("password: must be 1 to 32")
        );
        assert!(PasswordHash::from_hex("zz").is_err());
    }

    #[test]
    fn constructor_names_the_broken_rule() {
        check("Z13401000010301", "DW001", &[("w01018", 50.0, "mg/L")], Ok(()));
        check("JLYP01_AIR01_0001", "DA001", &[], Ok(()));
        check("", "DW001", &[], Err("mn: must be 1 to 24"));
        check("0123456789012345678901234", "DW001", &[], Err("mn: must be 1 to 24"));
        check("LD 13", "DW001", &[], Err("mn:"));
        check("LD13", " ", &[], Err("outlet:"));
        check("LD13", "DW001", &[("w01-018", 50.0, "mg/L")], Err("pollutant:"));
        check("LD13", "DW001", &[("w01018", 0.0, "mg/L")], Err("limit: must be a finite number above 0"));
        check("LD13", "DW001", &[("w01018", f64::NAN, "mg/L")], Err("limit:"));
        check("LD13", "DW001", &[("w01018", f64::INFINITY, "mg/L")], Err("limit:"));
        check("LD13", "DW001", &[("w01018", 1.0, "mg L")], Err("unit:"));
        check(
            "LD13",
            "DW001",
            &[("w01018", 50.0, "mg/L"), ("w01018", 60.0, "mg/L")],
            Err("limits: pollutant w01018 is listed twice"),
        );
    }
}
