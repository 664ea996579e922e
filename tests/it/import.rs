//! `ecocode import`: a CSV and a Parquet spreadsheet sent to the real server,
//! rejections mapped back to spreadsheet rows, scores moved, re-runs idempotent.

use std::path::Path;

use cli::Connection;
use cli::import::{ImportSummary, RowsRejected};
use polars::prelude::*;
use server::principals::Role;

use crate::support::*;

/// Runs an import and returns its summary, whether or not rows were rejected.
async fn import(conn: &Connection, file: &Path) -> ImportSummary {
    match cli::import::run(conn, file).await {
        Ok(summary) => summary,
        Err(e) => match e.downcast::<RowsRejected>() {
            Ok(RowsRejected(summary)) => summary,
            Err(e) => panic!("import failed as a whole: {e:#}"),
        },
    }
}

/// `(row, field or code)` of each rejected row.
fn rejected(summary: &ImportSummary) -> Vec<(usize, &str)> {
    summary.rejected.iter().map(|e| (e.row, e.field_or_code.as_str())).collect()
}

#[tokio::test]
async fn csv_and_parquet_import_keep_valid_rows_report_the_rest_and_rerun_adds_nothing() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    let before = admin.score(ACME).await;
    let conn =
        Connection::plaintext(format!("http://{}", server.addr), server.token("importer", Role::Admin));
    let dir = tempfile::tempdir().unwrap();

    // Rows 4 and 7 fail locally; 5, 6, 8 and 9 only the server can judge.
    let csv = dir.path().join("penalties.csv");
    std::fs::write(
        &csv,
        format!(
            "source,source_record_id,uscc,kind,occurred_at,amount_yuan,description,attr.outlet\n\
             beilun-epb,P-1,{ACME},penalty.fine,2026-03-02,30000,waste water,DW001\n\
             beilun-epb,P-2,{ACME},penalty.warning,2026-04-01T08:00:00+08:00,,late report,\n\
             beilun-epb,P-3,91330421739237858Y,penalty.warning,2026-04-01,,,\n\
             beilun-epb,P-4,{BETA},penalty.warning,2026-04-01,,unregistered,\n\
             beilun-epb,P-5,{ACME},penalty.parking,2026-04-01,,unknown kind,\n\
             beilun-epb,P-6,{ACME},penalty.fine,2026-04-01,30000.5,,\n\
             beilun-epb,P-7,{ACME},penalty.warning,2026-07-01,,in the future,\n\
             beilun-epb,P-8,{ACME},penalty.fine,2026-04-01,,no amount,\n"
        ),
    )
    .unwrap();
    let first = import(&conn, &csv).await;
    assert_eq!((first.rows, first.appended, first.duplicates), (8, 2, 0), "{first:?}");
    assert_eq!(
        rejected(&first),
        [
            (4, "uscc"),
            (5, "FailedPrecondition"),
            (6, "kind"),
            (7, "amount_yuan"),
            (8, "occurred_at"),
            (9, "amount_yuan"),
        ],
        "{first:#?}"
    );
    assert!(first.rejected[1].message.contains("not registered"), "{:?}", first.rejected[1]);

    let after_csv = admin.score(ACME).await;
    assert_eq!(after_csv.points, before.points - 5 - 3, "{after_csv:?}");
    let kinds: Vec<&str> = after_csv.reasons.iter().map(|r| r.kind.as_str()).collect();
    assert!(kinds.contains(&"penalty.fine") && kinds.contains(&"penalty.warning"), "{kinds:?}");

    // Re-running the same file adds nothing and reports the same rows.
    let again = import(&conn, &csv).await;
    assert_eq!((again.rows, again.appended, again.duplicates), (8, 0, 2), "{again:?}");
    assert_eq!(rejected(&again), rejected(&first));
    let unchanged = admin.score(ACME).await;
    assert_eq!((unchanged.points, unchanged.tree_size), (after_csv.points, after_csv.tree_size));

    // Parquet as pandas writes it: numeric ids, float amounts, a date column.
    let parquet = dir.path().join("penalties.parquet");
    let days = (days(-60).unix_nanos() / 86_400_000_000_000) as i32;
    let mut frame = DataFrame::new(
        2,
        vec![
            Column::new("source".into(), ["beilun-epb", "beilun-epb"]),
            Column::new("source_record_id".into(), [1001i64, 1002]),
            Column::new("uscc".into(), [ACME, ACME]),
            Column::new("kind".into(), ["penalty.fine", "penalty.warning"]),
            Column::new("occurred_at".into(), [days, days]).cast(&DataType::Date).unwrap(),
            Column::new("amount_yuan".into(), [60_000.0, 0.0]),
        ],
    )
    .unwrap();
    ParquetWriter::new(std::fs::File::create(&parquet).unwrap()).finish(&mut frame).unwrap();
    let summary = cli::import::run(&conn, &parquet).await.expect("every Parquet row is valid");
    assert_eq!((summary.rows, summary.appended, summary.duplicates, summary.rejected.len()), (2, 2, 0, 0));
    let after_parquet = admin.score(ACME).await;
    assert_eq!(after_parquet.points, after_csv.points - 10 - 3, "{after_parquet:?}");
    let again = cli::import::run(&conn, &parquet).await.unwrap();
    assert_eq!((again.appended, again.duplicates), (0, 2));
    server.stop().await;
}

#[tokio::test]
async fn a_header_typo_fails_the_file_before_anything_is_sent() {
    let server = TestServer::start().await;
    let conn =
        Connection::plaintext(format!("http://{}", server.addr), server.token("importer", Role::Admin));
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("typo.csv");
    std::fs::write(
        &csv,
        format!("source,source_record_id,uscc,kind,occurred_at,amount\nbeilun-epb,P-1,{ACME},penalty.fine,2026-03-02,30000\n"),
    )
    .unwrap();
    let err = cli::import::run(&conn, &csv).await.unwrap_err();
    assert!(err.downcast_ref::<RowsRejected>().is_none());
    assert!(err.to_string().contains("unknown columns \"amount\""), "{err:#}");
    server.stop().await;
}
