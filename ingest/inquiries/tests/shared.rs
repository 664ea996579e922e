//! The inquiry log on the shared PostgreSQL store: two handles (two nodes)
//! record into one log; every scope lists newest first, in pages, with
//! cursors bound to their listing.

use inquiries::{Error, Inquiry, InquiryLog, Query, Scope};

fn inquiry(uscc: &str, region: &str, principal: &str, at_ns: i64) -> Inquiry {
    Inquiry {
        uscc: uscc.into(),
        region_code: region.into(),
        principal: principal.into(),
        role: "lender".into(),
        method: "GetScore".into(),
        purpose: format!("loan {at_ns}"),
        at_ns,
        grant_seq: None,
    }
}

fn query(scope: Scope, page_size: usize) -> Query {
    Query { scope, from_ns: None, to_ns: None, page_size, after: None }
}

/// A database whose schema the ledger created, as `ecocode serve` does.
fn database() -> String {
    let url = pgtest::database();
    let dir = tempfile::tempdir().unwrap();
    let config = ledger::LedgerConfig { store: Some(url.clone()), ..ledger::LedgerConfig::new(dir.path()) };
    drop(ledger::Ledger::open(config).unwrap());
    url
}

#[tokio::test]
async fn two_nodes_record_into_one_log_and_every_scope_pages_newest_first() {
    let url = database();
    let (a, b) = (InquiryLog::open_shared(&url).unwrap(), InquiryLog::open_shared(&url).unwrap());
    for t in 0..30 {
        let log = if t % 2 == 0 { &a } else { &b };
        let (uscc, region, bank) =
            if t % 3 == 0 { ("U1", "330206", "bank-a") } else { ("U2", "110101", "bank-b") };
        log.record(&[inquiry(uscc, region, bank, 1_000 + t)]).await.unwrap();
    }
    // Two at one instant keep the order they were recorded in (newest first).
    a.record(&[inquiry("U1", "330206", "bank-a", 5_000), inquiry("U1", "330206", "bank-b", 5_000)])
        .await
        .unwrap();

    let everything = |log: &InquiryLog, scope: Scope, size: usize| {
        let mut q = query(scope, size);
        let mut seen = Vec::new();
        loop {
            let page = log.list(&q).unwrap();
            assert!(page.inquiries.len() <= size);
            seen.extend(page.inquiries.iter().map(|i| (i.at_ns, i.principal.clone())));
            match page.next {
                Some(next) => q.after = Some(next),
                None => return seen,
            }
        }
    };
    let all = everything(&b, Scope::All, 7);
    assert_eq!(all.len(), 32);
    assert_eq!(all[0], (5_000, "bank-b".to_string()));
    assert_eq!(all[1], (5_000, "bank-a".to_string()));
    assert!(all.windows(2).all(|w| w[0].0 >= w[1].0), "newest first");

    let u1 = everything(&a, Scope::Enterprise("U1".into()), 3);
    assert_eq!(u1.len(), 12);
    let region = everything(&a, Scope::Region("3302".into()), 100);
    assert_eq!(region.len(), 12);
    let mine = everything(&b, Scope::Inquirer { principal: "bank-b".into(), uscc: Some("U1".into()) }, 5);
    assert_eq!(mine, vec![(5_000, "bank-b".to_string())]);

    // From / to bound the instants, `to` exclusive.
    let window =
        a.list(&Query { from_ns: Some(1_010), to_ns: Some(1_020), ..query(Scope::All, 100) }).unwrap();
    assert_eq!(window.inquiries.len(), 10);

    // A cursor of one listing is refused by another.
    let first = a.list(&query(Scope::Enterprise("U1".into()), 2)).unwrap();
    let other = Query { after: first.next, ..query(Scope::Enterprise("U2".into()), 2) };
    assert!(matches!(a.list(&other), Err(Error::BadCursor)));
    assert!(matches!(
        a.list(&Query { after: Some(b"junk".to_vec()), ..query(Scope::All, 2) }),
        Err(Error::BadCursor)
    ));
}

/// The inquiry log creates its own table: on a database no ledger ever
/// touched, on one the ledger's older migrations set up (what the fixture
/// `database()` makes, table included), and again on reopening.
#[tokio::test]
async fn the_log_creates_and_migrates_its_own_table() {
    for url in [pgtest::database(), database()] {
        for _ in 0..2 {
            let log = InquiryLog::open_shared(&url).unwrap();
            log.record(&[Inquiry { grant_seq: Some(7), ..inquiry("U1", "330206", "bank-a", 1) }])
                .await
                .unwrap();
        }
        let log = InquiryLog::open_shared(&url).unwrap();
        let page = log.list(&query(Scope::All, 10)).unwrap();
        assert_eq!(page.inquiries.len(), 2);
        assert!(page.inquiries.iter().all(|i| i.grant_seq == Some(7)));
    }
}

/// Runs `sql` on `url`, as an operator with database access could.
fn execute(url: &str, sql: &'static str) {
    let pg = kv::pg::Postgres::connect(url, 1, "test-sql").unwrap();
    let pool = pg.pool().clone();
    pg.run(async move { pool.get().await.unwrap().batch_execute(sql).await.unwrap() }).unwrap();
}

/// A database a newer binary migrated is refused, naming what to do.
#[test]
fn a_newer_schema_of_the_log_is_refused_with_what_to_do() {
    let url = pgtest::database();
    drop(InquiryLog::open_shared(&url).unwrap());
    execute(&url, "UPDATE ecocode_components SET version = version + 1 WHERE component = 'inquiries'");
    let Err(err) = InquiryLog::open_shared(&url) else { panic!("a newer schema must be refused") };
    assert!(err.to_string().contains("run a newer ecocode"), "{err}");
}
