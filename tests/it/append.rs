//! `ecocode append` of a file longer than one stream may carry: it goes
//! in bounded chunks, one client stream each; a stop part-way names the
//! lines appended, and resuming (or running the whole file again) completes
//! it with nothing twice.

use std::io::Write as _;

use cli::Connection;
use cli::append::{Options, Stopped, send_file};
use server::principals::Role;

use crate::support::*;

/// Records the server takes per stream in this test (`--max-stream-records`).
const MAX_STREAM_RECORDS: u64 = 40;

/// Line `i` of the file: a record from `beilun-epb` about ACME.
fn line(i: usize) -> String {
    format!(
        r#"{{"source":"beilun-epb","source_record_id":"line-{i}","uscc":"{ACME}","kind":"inspection.finding","occurred_at":"{}","description":"line {i}"}}"#,
        days(-1)
    )
}

fn write_file(path: &std::path::Path, lines: impl Iterator<Item = String>) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for l in lines {
        writeln!(file, "{l}").unwrap();
    }
    file.flush().unwrap();
}

/// How many records the ledger holds, and whether any id is there twice.
fn records_in_ledger(server: &TestServer) -> (usize, bool) {
    let ledger = &server.ledger;
    let mut ids: Vec<String> = ledger
        .scan(0, ledger.head().size)
        .map(|e| e.unwrap())
        .filter(|e| !tlog::index::is_index_payload(&e.payload))
        .filter_map(|e| record_in(e.seq, &e.payload, &e.details).map(|r| r.source_record_id))
        .collect();
    let count = ids.len();
    ids.sort();
    ids.dedup();
    (count, ids.len() != count)
}

// `ecocode append` read a 3 100 000-line file whole and sent it as one
// stream, which failed past --max-stream-records with no word of where to resume.
#[tokio::test]
async fn a_file_longer_than_a_stream_is_appended_in_chunks_and_a_stop_says_where_to_resume() {
    let server = TestServer::start_with(|c| c.transport.max_stream_records = MAX_STREAM_RECORDS).await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Ningbo Acme Dyeing Co.", "330206").await;
    let token = server.token("feed", Role::Source { source: "beilun-epb".into() });
    let conn = Connection::plaintext(format!("http://{}", server.addr), token);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("year.jsonl");
    let chunked = Options { chunk_records: MAX_STREAM_RECORDS, ..Options::default() };

    // Line 101 of 150 is broken: the 100 lines before it go in three
    // streams (40 + 40 + 20), and the stop says exactly that.
    write_file(&path, (1..=150).map(|i| if i == 101 { "{not json".to_owned() } else { line(i) }));
    let error = send_file(&conn, &path, &chunked).await.unwrap_err();
    let stopped = error.downcast_ref::<Stopped>().expect("a stop with the lines appended");
    assert_eq!(
        (stopped.summary.lines_done, stopped.summary.appended, stopped.summary.streams),
        (100, 100, 3),
        "{stopped}"
    );
    let text = stopped.to_string();
    assert!(text.contains("year.jsonl:101: not a record"), "{text}");
    assert!(text.contains("lines 1..=100 of"), "{text}");
    assert!(text.contains("--skip-lines 100"), "{text}");
    assert_eq!(records_in_ledger(&server), (100, false));

    // Fixed, and resumed where it stopped: only the rest is sent.
    write_file(&path, (1..=150).map(line));
    let resumed = send_file(&conn, &path, &Options { skip_lines: 100, ..chunked.clone() }).await.unwrap();
    assert_eq!((resumed.records, resumed.appended, resumed.duplicates, resumed.streams), (50, 50, 0, 2));
    assert_eq!(resumed.lines_done, 150);
    // The whole file again: every stream below the server's limit, nothing twice.
    let again = send_file(&conn, &path, &chunked).await.unwrap();
    assert_eq!((again.records, again.appended, again.duplicates, again.streams), (150, 0, 150, 4));
    assert_eq!(records_in_ledger(&server), (150, false));

    // A chunk above the server's limit is refused with what to change.
    let error =
        send_file(&conn, &path, &Options { chunk_records: 100, ..Options::default() }).await.unwrap_err();
    let text = error.downcast_ref::<Stopped>().expect("a stop").to_string();
    assert!(text.contains("ResourceExhausted") && text.contains("smaller --chunk-records"), "{text}");
    assert_eq!(records_in_ledger(&server), (150, false));
    server.stop().await;
}
