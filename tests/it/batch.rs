//! Batch views against the online scorer: `score-all` exports and `report`
//! statistics, computed client-side with polars from `Ledger.ListEntries`,
//! must equal what `Scores.BatchGetScores` and `GetScore` say.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use cli::Connection;
use cli::batch::{self, DIMENSIONS};
use ecocode_proto::v1 as pb;
use polars::prelude::*;
use scoring::{Model, Timestamp};
use server::principals::Role;

use crate::support::*;

/// The earlier instant of the report; `T0` (the harness's now) is the later.
const T1_DAY: i64 = -60;

struct Fixture {
    server: TestServer,
    admin: Client,
    conn: Connection,
    /// uscc -> (region_code, industry_code)
    enterprises: BTreeMap<String, (String, String)>,
}

impl Fixture {
    fn conn_as(&self, name: &str, role: Role) -> Connection {
        let token = self.server.token(name, role);
        Connection::plaintext(format!("http://{}", self.server.addr), token)
    }

    async fn online(&mut self, at: Timestamp) -> BTreeMap<String, pb::Score> {
        let request =
            pb::BatchGetScoresRequest { uscc: self.enterprises.keys().cloned().collect(), as_of: ts(at) };
        let response = self.admin.scores.batch_get_scores(request).await.expect("batch scores").into_inner();
        assert!(response.not_found.is_empty(), "{:?}", response.not_found);
        response.scores.into_iter().map(|s| (s.uscc.clone(), s)).collect()
    }
}

/// Twelve enterprises in two cities (three regions) and three industries,
/// with vetoes, caps, disputes, rectification, repair, voiding, bonuses and
/// records that start or expire between `T1` and `T0`.
async fn fixture() -> Fixture {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    let conn =
        Connection::plaintext(format!("http://{}", server.addr), server.token("batch-admin", Role::Admin));
    let mut enterprises = BTreeMap::new();
    let places = [
        ("330206", "C2614"),
        ("330206", "D4411"),
        ("330203", "C2614"),
        ("330203", "C3011"),
        ("330411", "C3011"),
        ("330411", "D4411"),
    ];
    let mut usccs = Vec::new();
    for i in 0..12 {
        let (region, industry) = places[i % places.len()];
        let id = uscc(&format!("9133020600000{i:04}"));
        let e = pb::Enterprise {
            uscc: id.clone(),
            name: format!("Enterprise {i}"),
            region_code: region.into(),
            industry_code: industry.into(),
        };
        admin.registry.register_enterprise(e).await.expect("registered");
        enterprises.insert(id.clone(), (region.to_owned(), industry.to_owned()));
        usccs.push(id);
    }
    let u = |i: usize| usccs[i].as_str();
    let mut append = async |r: pb::Record| admin.append(r).await.expect("appended").seq;

    // 0: no records at all: 100, GREEN at both instants.
    // 1: a veto long before T1: RED at both.
    append(record(u(1), "1-V", "veto.data_fraud", -100)).await;
    // 2: a suspension, rectified and verified between T1 and T0: YELLOW -> GREEN.
    let suspend = append(record(u(2), "2-S", "enforcement.suspend", -200)).await;
    append(step(u(2), "2-R", "rectification.submitted", -100, suspend)).await;
    append(step(u(2), "2-V", "rectification.verified", -30, suspend)).await;
    // 3: a fine after T1: 100 -> 90, GREEN at both.
    append(record(u(3), "3-F", "penalty.fine", -50)).await;
    // 4: an incident expiring between T1 and T0 (365 days from -400): 72 YELLOW -> 87 GREEN.
    append(record(u(4), "4-I", "incident.general", -400)).await;
    append(record(u(4), "4-F", "penalty.fine", -200)).await;
    append(record(u(4), "4-W", "penalty.warning", -100)).await;
    // 5: a disputed complaint: disputed at T0 only.
    let complaint = append(record(u(5), "5-C", "complaint.verified", -30)).await;
    append(step(u(5), "5-D", "dispute.opened", -20, complaint)).await;
    // 6: six complaints under the -10 cap: 90 at both.
    for k in 0..6 {
        append(record(u(6), &format!("6-C{k}"), "complaint.verified", -100 + k)).await;
    }
    // 7: a suspension after T1: GREEN -> YELLOW.
    append(record(u(7), "7-S", "enforcement.suspend", -20)).await;
    // 8: a veto after T1: GREEN -> RED.
    append(record(u(8), "8-V", "veto.crime", -10)).await;
    // 9: a fine rectified and repaired before T1, a warning after it.
    let fine = append(record(u(9), "9-F", "penalty.fine", -300)).await;
    append(step(u(9), "9-V", "rectification.verified", -250, fine)).await;
    append(step(u(9), "9-G", "repair.granted", -150, fine)).await;
    append(record(u(9), "9-W", "penalty.warning", -30)).await;
    // 10: two seals (POOR without a veto), one voided between T1 and T0: RED -> YELLOW.
    let seal = append(record(u(10), "10-S1", "enforcement.seal", -100)).await;
    append(record(u(10), "10-S2", "enforcement.seal", -90)).await;
    let mut void = step(u(10), "10-X", "record.voided", -40, seal);
    void.attributes.insert("reason".into(), "annulled on review".into());
    append(void).await;
    // 11: a bonus beside a warning, clamped at 100.
    append(record(u(11), "11-A", "award.environmental", -10)).await;
    append(record(u(11), "11-W", "penalty.warning", -5)).await;

    Fixture { server, admin, conn, enterprises }
}

fn text(frame: &DataFrame, name: &str) -> Vec<String> {
    let column = frame.column(name).unwrap_or_else(|e| panic!("column {name}: {e}"));
    let column = column.cast(&DataType::String).unwrap();
    column.str().unwrap().iter().map(|s| s.unwrap_or_default().to_owned()).collect()
}

fn read_parquet(path: &Path) -> DataFrame {
    ParquetReader::new(std::fs::File::open(path).unwrap()).finish().unwrap()
}

fn read_csv(path: &Path) -> DataFrame {
    // Everything as text, so a USCC or region code is never read as a number.
    CsvReadOptions::default()
        .with_infer_schema_length(Some(0))
        .try_into_reader_with_file_path(Some(path.to_owned()))
        .unwrap()
        .finish()
        .unwrap()
}

/// The export's rows as (uscc -> the compared fields), all as text.
fn rows_of(frame: &DataFrame) -> BTreeMap<String, [String; 9]> {
    let columns =
        ["points", "grade", "code", "mee_level", "veto", "disputed", "as_of", "tree_size", "model_version"]
            .map(|c| text(frame, c));
    text(frame, "uscc")
        .into_iter()
        .enumerate()
        .map(|(i, uscc)| (uscc, columns.each_ref().map(|c| c[i].clone())))
        .collect()
}

fn expected_rows(online: &BTreeMap<String, pb::Score>, at: Timestamp) -> BTreeMap<String, [String; 9]> {
    online
        .iter()
        .map(|(uscc, s)| {
            let fields = [
                s.points.to_string(),
                s.grade().as_str_name().to_owned(),
                s.code().as_str_name().to_owned(),
                s.mee_level().as_str_name().trim_start_matches("MEE_LEVEL_").to_owned(),
                s.veto.to_string(),
                s.disputed.to_string(),
                at.to_string(),
                s.tree_size.to_string(),
                s.model_version.clone(),
            ];
            (uscc.clone(), fields)
        })
        .collect()
}

#[tokio::test]
async fn score_all_exports_equal_the_online_scores_of_every_enterprise() {
    let mut f = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let model = Model::builtin();
    for (day, file) in [(0, "now.parquet"), (0, "now.csv"), (T1_DAY, "earlier.parquet"), (-500, "before.csv")]
    {
        let at = days(day);
        let out = dir.path().join(file);
        let rows = batch::score_all(&f.conn, &model, Some(at), &out).await.expect("score-all");
        assert_eq!(rows.len(), f.enterprises.len(), "one row per registered enterprise");

        let frame = if file.ends_with(".parquet") { read_parquet(&out) } else { read_csv(&out) };
        let names: Vec<&str> = frame.get_column_names().into_iter().map(|n| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "uscc",
                "name",
                "region_code",
                "industry_code",
                "points",
                "grade",
                "code",
                "mee_level",
                "veto",
                "disputed",
                "as_of",
                "tree_size",
                "model_version"
            ]
        );
        let online = f.online(at).await;
        assert_eq!(rows_of(&frame), expected_rows(&online, at), "{file}: batch differs from online");
        let places: BTreeMap<String, (String, String)> = text(&frame, "uscc")
            .into_iter()
            .zip(text(&frame, "region_code").into_iter().zip(text(&frame, "industry_code")))
            .collect();
        assert_eq!(places, f.enterprises, "{file}");
    }
    // The fixture is meant to cover every colour and the flags at T0.
    let online = f.online(T0).await;
    let codes: BTreeSet<&str> = online.values().map(|s| s.code().as_str_name()).collect();
    assert_eq!(codes, BTreeSet::from(["GREEN", "YELLOW", "RED"]));
    assert!(online.values().any(|s| s.veto) && online.values().any(|s| s.disputed));
    f.server.stop().await;
}

#[tokio::test]
async fn score_all_rejects_an_unknown_format_before_fetching() {
    let f = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("scores.xlsx");
    let error = batch::score_all(&f.conn, &Model::builtin(), Some(T0), &out).await.unwrap_err();
    assert!(error.to_string().contains(".parquet or .csv"), "{error}");
    assert!(!out.exists());
    f.server.stop().await;
}

/// Per (dimension, group): [enterprises, green, yellow, red, integrity, good, warning, poor,
/// mee_green, mee_blue, mee_yellow, mee_red].
type Counts = BTreeMap<(String, String), [u32; 12]>;

fn expected_counts(online: &BTreeMap<String, pb::Score>, f: &Fixture) -> Counts {
    let mut counts = Counts::new();
    for (uscc, s) in online {
        let (region, industry) = &f.enterprises[uscc];
        let code = s.code() as usize; // GREEN = 1 .. RED = 3
        let grade = s.grade() as usize; // INTEGRITY = 1 .. POOR = 4
        let mee = s.mee_level() as usize; // MEE_LEVEL_GREEN = 1 .. MEE_LEVEL_RED = 4
        for (dimension, group) in
            DIMENSIONS.iter().zip([region.clone(), region[..4].to_owned(), industry.clone()])
        {
            let c = counts.entry((dimension.to_string(), group)).or_default();
            c[0] += 1;
            c[code] += 1;
            c[3 + grade] += 1;
            c[7 + mee] += 1;
        }
    }
    counts
}

fn report_counts(distribution: &DataFrame) -> Counts {
    let names = [
        "enterprises",
        "green",
        "yellow",
        "red",
        "integrity",
        "good",
        "warning",
        "poor",
        "mee_green",
        "mee_blue",
        "mee_yellow",
        "mee_red",
    ];
    let columns = names.map(|n| distribution.column(n).unwrap().u32().unwrap().clone());
    let keys = text(distribution, "dimension").into_iter().zip(text(distribution, "group"));
    keys.enumerate().map(|(i, key)| (key, columns.each_ref().map(|c| c.get(i).unwrap()))).collect()
}

#[tokio::test]
async fn report_counts_match_the_online_scores_and_lists_exactly_the_colour_changes() {
    let mut f = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let (out, changes_out) = (dir.path().join("report.csv"), dir.path().join("changes.parquet"));
    let (t1, t2) = (days(T1_DAY), T0);
    let report =
        batch::report(&f.conn, &Model::builtin(), Some(t1), Some(t2), None, Some(&out), Some(&changes_out))
            .await
            .expect("report");

    let online = f.online(t2).await;
    assert_eq!(report_counts(&report.distribution), expected_counts(&online, &f));
    let keys: Vec<(String, String)> = text(&report.distribution, "dimension")
        .into_iter()
        .zip(text(&report.distribution, "group"))
        .collect();
    assert_eq!(
        keys.iter().map(|(d, _)| d.as_str()).collect::<BTreeSet<_>>(),
        BTreeSet::from(DIMENSIONS),
        "every dimension has groups"
    );
    let families: [(&str, &[&str]); 3] = [
        ("colour", &["green", "yellow", "red"]),
        ("grade", &["integrity", "good", "warning", "poor"]),
        ("MEE level", &["mee_green", "mee_blue", "mee_yellow", "mee_red"]),
    ];
    for (family, names) in families {
        let shares: Vec<Float64Chunked> = names
            .iter()
            .map(|n| report.distribution.column(&format!("{n}_share")).unwrap().f64().unwrap().clone())
            .collect();
        for (i, key) in keys.iter().enumerate() {
            let sum: f64 = shares.iter().map(|s| s.get(i).unwrap()).sum();
            assert!((sum - 1.0).abs() < 1e-9, "{key:?}: {family} shares sum to {sum}");
        }
    }
    // The CSV export holds the same table.
    let exported = read_csv(&out);
    assert_eq!(exported.height(), report.distribution.height());
    assert_eq!(text(&exported, "group"), text(&report.distribution, "group"));
    assert_eq!(text(&exported, "red"), text(&report.distribution, "red"));

    // The changes: exactly the enterprises whose colour GetScore reports
    // differently at the two instants, with both colours and points.
    let mut expected = BTreeMap::new();
    for uscc in f.enterprises.keys() {
        let mut at = async |t: Timestamp| {
            let request = pb::GetScoreRequest { uscc: uscc.clone(), as_of: ts(t), tree_size: 0 };
            f.admin.scores.get_score(request).await.expect("score").into_inner()
        };
        let (before, after) = (at(t1).await, at(t2).await);
        if before.code != after.code {
            let flip = format!(
                "{} {} -> {} {}",
                before.code().as_str_name(),
                before.points,
                after.code().as_str_name(),
                after.points
            );
            expected.insert(uscc.clone(), flip);
        }
    }
    let listed: BTreeMap<String, String> = report
        .changes
        .iter()
        .map(|c| {
            let flip = format!(
                "{} {} -> {} {}",
                c.previous_code, c.previous_points, c.current_code, c.current_points
            );
            (c.uscc.clone(), flip)
        })
        .collect();
    assert_eq!(listed, expected);
    assert_eq!(listed.len(), 5, "the fixture flips enterprises 2, 4, 7, 8 and 10");
    let exported = read_parquet(&changes_out);
    assert_eq!(text(&exported, "uscc"), listed.keys().cloned().collect::<Vec<_>>());
    assert_eq!(
        text(&exported, "previous_code"),
        report.changes.iter().map(|c| c.previous_code.to_string()).collect::<Vec<_>>()
    );
    f.server.stop().await;
}

#[tokio::test]
async fn a_regional_report_covers_only_enterprises_of_that_region() {
    let mut f = fixture().await;
    let regulator = f.conn_as("batch-regulator", Role::Regulator { region_prefix: "3304".into() });
    let report = batch::report(&regulator, &Model::builtin(), None, Some(T0), Some("3304"), None, None)
        .await
        .expect("report");
    let expected: BTreeSet<&String> =
        f.enterprises.iter().filter(|(_, (r, _))| r.starts_with("3304")).map(|(u, _)| u).collect();
    assert_eq!(report.scores.iter().map(|r| &r.uscc).collect::<BTreeSet<_>>(), expected);
    assert!(report.changes.is_empty(), "no --from, no changes");
    let online = f.online(T0).await;
    for row in &report.scores {
        let s = &online[&row.uscc];
        assert_eq!((row.points, row.code.as_str()), (s.points, s.code().as_str_name()), "{}", row.uscc);
    }
    let groups: BTreeSet<String> = text(&report.distribution, "group").into_iter().collect();
    assert!(groups.contains("3304") && !groups.contains("3302"), "{groups:?}");
    f.server.stop().await;
}
